"""What every job's command line shares: parsers generated from the config dataclasses (one source
of defaults, help text and choices: a field typed `Literal[...]` offers those values), and `run_cli`,
which turns every way a job can end into an exit code and at most one line on stderr; logging and the
Ray session of a job.

Exit codes: 0 done; 1 a user mistake (one `error: ...` line) or an unexpected error; 2 a usage
error (argparse); 70 a fault of the environment, a worker or the code stopped the run (one line
naming it and its likely cause; nothing was written off: fix it and rerun); 75 some inputs hit
transient errors (rerun to retry them); 130 interrupted. `--debug` adds the traceback of any
error, with the errors it was raised from.
stdout carries only a job's JSON summary; banners, logs and progress go to stderr.
Every line printed (`say`, the log handler, `print_summary`) has its credentials redacted and the
control characters that came with data escaped (`pipeline.redaction.terminal_line`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import types
import typing
from collections.abc import Callable

from ..errors import ConfigError, Interrupted, UserError
from ..faults import fault_in
from ..redaction import has_password, redact, redact_all, terminal_line

log = logging.getLogger(__name__)

EXIT_ERROR = 1
EXIT_FAULT = 70  # EX_SOFTWARE: the environment, a worker or the code failed, not an input
EXIT_RETRYABLE = 75  # EX_TEMPFAIL: a rerun of the same command retries what failed transiently
EXIT_INTERRUPTED = 130
DEBUG_ENV = "PIPELINE_DEBUG"
METAVARS = {int: "N", float: "X"}
# Where Ray Data logs a failed run's tracebacks before raising (run_cli says it in one line).
RAY_DATA_ABORT_LOGGERS = ("ray.data.exceptions", "ray.data._internal.execution.streaming_executor_state",
                          "ray.data._internal.execution.operators.actor_pool_map_operator")
# Ray Data appends this note (and advice on its retry settings) to the message of a task's error.
RAY_RETRY_NOTE = re.compile(r"\n\s*Failed to [^\n]* after \d+/\d+ attempts \(total backoff.*", re.DOTALL)

# --- parsers generated from dataclasses -------------------------------------------------------

def count_or_range(value: str) -> int | tuple[int, int]:
    """'4' → 4; '1-8' → (1, 8)."""
    low, sep, high = value.partition("-")
    try:
        parsed = (int(low), int(high)) if sep else int(low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX, got {value!r}") from None
    if isinstance(parsed, tuple) and not 0 <= parsed[0] <= parsed[1]:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX with 0 <= MIN <= MAX, got {value!r}")
    if isinstance(parsed, int) and parsed < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {value!r}")
    return parsed


def _value_parser(hint) -> Callable[[str], object]:
    """The argparse `type` for a field annotation: str, int, float, N|MIN-MAX or a Literal's values'
    type (optional or not)."""
    options = _options(hint)
    if any(typing.get_origin(a) is tuple for a in options):
        return count_or_range
    choices = _choices(hint)
    if choices:
        return type(choices[0])
    for kind in (int, float, str):
        if kind in options:
            return kind
    raise TypeError(f"no command-line parser for a field of type {hint}")


def _choices(hint) -> tuple | None:
    """The values of a `Literal[...]` annotation (optional or not); None for any other type."""
    literals = [a for a in _options(hint) if typing.get_origin(a) is typing.Literal]
    return typing.get_args(literals[0]) if literals else None


def _options(hint) -> list:
    """The types a field may hold, None left out."""
    return [a for a in typing.get_args(hint) if a is not type(None)] if _is_union(hint) else [hint]


def _is_list(hint) -> bool:
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    return any(typing.get_origin(a) is list for a in options)


def _is_union(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _help_of(f: dataclasses.Field, default) -> str:
    text = f.metadata.get("help", "")
    if f.metadata.get("required"):
        text += " (required)"
    elif "default" not in text:  # texts that explain their default themselves keep their wording
        shown = "off" if default is False else "not set" if default is None else default
        text += f" (default: {shown})"
    return text.replace("%", "%%")


def _option_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _field_groups(config_cls) -> list[tuple[type, list[dataclasses.Field]]]:
    """Fields grouped by the dataclass that declares them, the most derived class first."""
    seen: set[str] = set()
    groups = []
    for cls in config_cls.__mro__:
        if not dataclasses.is_dataclass(cls):
            continue
        own = [f for f in dataclasses.fields(cls)
               if f.init and f.name not in seen and _declared_in(cls, f.name)]
        seen.update(f.name for f in own)
        if own:
            groups.append((cls, own))
    return groups


def _declared_in(cls, name: str) -> bool:
    return not any(dataclasses.is_dataclass(base) and name in base.__dataclass_fields__
                   for base in cls.__bases__)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=110)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (not the whole usage block), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser(config_cls, description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one option per field of `config_cls` (a dataclass whose fields carry
    `help`, and optionally `metavar`, `flag`, `required`, `nargs`, `const` metadata; a field typed
    `Literal[...]` takes only those values)."""
    parser = _Parser(prog=prog, description=description, formatter_class=_HelpFormatter)
    hints = typing.get_type_hints(config_cls)
    for index, (cls, group_fields) in enumerate(_field_groups(config_cls)):
        title = "settings" if index == 0 else (cls.__doc__ or cls.__name__).split(".")[0].strip()
        group = parser.add_argument_group(title)
        for f in group_fields:
            default = _default_of(f)
            kwargs: dict = {"dest": f.name, "default": default, "help": _help_of(f, default)}
            if hints[f.name] is bool:
                kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
            elif _is_list(hints[f.name]):  # a repeatable option: each use adds one value
                kwargs.update(action="append", type=str, metavar=f.metadata.get("metavar"))
            else:
                kwargs["type"] = _value_parser(hints[f.name])
                choices = _choices(hints[f.name])
                if choices:
                    kwargs["choices"] = choices
                else:
                    kwargs["metavar"] = METAVARS.get(kwargs["type"])
                for key in ("metavar", "required", "nargs", "const"):
                    if f.metadata.get(key) is not None:
                        kwargs[key] = f.metadata[key]
            group.add_argument(_option_name(f), **kwargs)
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of unexpected errors (or set {DEBUG_ENV}=1)")
    return parser


def parse_config(config_cls, argv: list[str] | None = None, description: str = "", prog: str | None = None):
    """Parse `argv` (default: sys.argv[1:]) into a `config_cls` instance; usage errors exit 2, a URL
    with `user:password@` is a ConfigError."""
    namespace = build_parser(config_cls, description, prog).parse_args(argv)
    values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(config_cls) if f.init}
    for f in dataclasses.fields(config_cls):
        if isinstance(values.get(f.name), str) and has_password(values[f.name]):
            raise ConfigError(f"{_option_name(f)} {redact(values[f.name])}: credentials do not go in a URL (the "
                              "storage backends ignore them there, and their errors would quote them); give them "
                              "in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or a profile "
                              "(--aws-profile)")
    return config_cls(**values)


# --- running a job: errors → exit codes and one line ------------------------------------------

def run_cli(job: Callable[[], int | None], argv: list[str] | None = None) -> int:
    """Run `job` and return its exit code; a user mistake, an interruption or an unexpected error
    becomes one line on stderr instead of a traceback (kept with --debug or PIPELINE_DEBUG=1)."""
    debug = debug_requested(argv)
    try:
        return int(job() or 0)
    except KeyboardInterrupt:
        say("interrupted; rerun the same command to resume")
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - every error ends here, as one line
        if debug:  # the whole chain: what was raised, and what it was raised from
            import traceback

            traceback.print_exception(error)
        cause = _user_facing_cause(error)
        if isinstance(cause, Interrupted):
            say(str(cause))
            return EXIT_INTERRUPTED
        if isinstance(cause, UserError):
            say(f"error: {one_line(cause)}")
            return EXIT_ERROR
        fault = fault_in(error)
        if fault is not None:
            say(f"error: {fault.line}; no input was recorded as failed for it and committed shards are kept: "
                "rerun the same command once it is fixed")
            return EXIT_FAULT
        say(f"error: unexpected {type(cause).__name__}: {one_line(cause)[:500]} "
             f"(rerun with --debug or {DEBUG_ENV}=1 for the traceback)")
        return EXIT_ERROR


def debug_requested(argv: list[str] | None) -> bool:
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _user_facing_cause(error: BaseException) -> BaseException:
    """A UserError or Interrupted raised inside a Ray task reaches the driver wrapped (RayTaskError,
    whose text holds the remote traceback): the original is its `cause`."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (UserError, Interrupted)) and not hasattr(error, "cause"):
            return error
        inner = getattr(error, "cause", None) or error.__cause__
        if not isinstance(inner, BaseException):
            return error
        error = inner
    return error


def one_line(error: BaseException) -> str:
    return " ".join(RAY_RETRY_NOTE.sub("", str(error)).split()) or type(error).__name__


def say(line: str) -> None:
    """One line on stderr: credentials redacted, control characters from data escaped."""
    print(terminal_line(line), file=sys.stderr, flush=True)


class _TerminalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return terminal_line(super().format(record))


def print_summary(summary: dict, stdout) -> None:
    """The job's JSON summary on stdout (redacted; JSON escapes control characters itself)."""
    print(json.dumps({"summary": redact_all(summary)}, indent=2), file=stdout, flush=True)


def setup_logging(level: int = logging.INFO) -> None:
    """Our logs at INFO on stderr, concise; every library's (Ray, botocore, fsspec...) from WARNING up.
    Every line is redacted and escaped as `say`'s are."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_TerminalFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger(__name__.split(".")[0]).setLevel(level)


def start_ray(num_cpus: int | None, debug: bool = False) -> None:
    """Join the cluster under `ray job submit` ($RAY_ADDRESS), else start a fresh embedded Ray
    (never a stale local cluster by accident). Ray's own progress bars stay off: the job shows one."""
    import ray
    from ray.data import DataContext

    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # Ray 2.60 turns token auth on for a new local cluster and warns that it did: news to nobody here.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not its "Starting execution ..." lines
    # ... and Ray Data's warning that the bars are off is about the bars we replaced.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    if not debug:
        for name in RAY_DATA_ABORT_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)


@contextlib.contextmanager
def ray_session(num_cpus: int | None, debug: bool):
    """Ray started (or joined) for the block and shut down after it, however it ends. Meanwhile
    stdout is stderr: Ray prints its workers' and raylet's lines to stdout, which carries only
    the job's summary (written to the saved stdout)."""
    import ray

    with contextlib.redirect_stdout(sys.stderr):
        try:
            start_ray(num_cpus, debug)
            yield
        finally:
            if ray.is_initialized():
                ray.shutdown()


def synthetic_banner() -> None:
    say("*" * 78 + "\n* SYNTHETIC WEIGHTS: random test checkpoint; the tokens mean nothing.\n" + "*" * 78)


# --- helpers ----------------------------------------------------------------------------------

def join_url(url: str, name: str) -> str:
    return url.rstrip("/") + "/" + name


def prog_name(script: str) -> str | None:
    """`python jobs/x.py` shows as such in usage lines; a console script keeps its own name."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return f"python jobs/{script}" if name == script else None
