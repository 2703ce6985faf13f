"""Faults: errors that are not an input's own, so they stop a run instead of writing inputs off.

A `Fault` is raised where a stage meets an error that the allow-list of content failures
(`pipeline/content_errors.py`) does not name: a library that cannot load, a missing package, a
worker out of memory, a bug of ours. The job ends with one line naming the error and its likely
cause (exit 70); committed shards stay, and no input is recorded as failed because of it.

On the driver the Fault arrives wrapped by Ray: raised in a task, it is the `cause` of a
`RayTaskError`; raised while an actor starts, Ray keeps only its text (`fault_in` reads both).
"""

from __future__ import annotations

import re
from importlib import metadata

from .errors import PipelineError

MESSAGE_CHARS = 300
# OSError texts of a native library that cannot be loaded (dlopen, ctypes, cffi, torch's loader).
_LIBRARY_LOAD = re.compile(r"cannot load library|could not load|undefined symbol|cannot open shared object"
                           r"|\.so\b|\.so\.\d|\.dylib|\.dll\b|library not loaded|image not found")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FAULT_LINE = re.compile(r"^(?:[\w.]+\.)?Fault: (.+)$", re.MULTILINE)  # a Fault in a remote traceback
# Ray's errors for a worker process that died running a task (after its retries).
_WORKER_DEATHS = ("WorkerCrashedError", "OutOfMemoryError", "NodeDiedError", "ActorDiedError", "ActorUnavailableError",
                  "LocalRayletDiedError")
# Exceptions that only a bug raises (ours, or a library's API that differs from the locked one).
_BUG_TYPES = (TypeError, AttributeError, NameError, KeyError, IndexError, AssertionError, NotImplementedError,
              ZeroDivisionError, RecursionError)


class Fault(PipelineError):
    """The worker, its environment or our code failed, not an input: the run stops, nothing is
    written off. `line` is the one line the job prints (Ray may append text to `str()`)."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line

    @classmethod
    def from_error(cls, where: str, error: BaseException) -> Fault:
        """`where` failed with `error`: the error in its own words, and its likely cause."""
        return cls(f"{where} failed with {type(error).__name__}: {brief(error)} (likely cause: {likely_cause(error)})")


def likely_cause(error: BaseException) -> str:
    """What most probably broke, and the fix, for a class of errors (not for one library)."""
    text = str(error).lower()
    if isinstance(error, (ImportError, OSError)) and _LIBRARY_LOAD.search(text):
        if "torchaudio" in text:
            return (f"torchaudio {_version('torchaudio')} cannot load with torch {_version('torch')}; reinstall "
                    "the tested pair from the lock file (make setup)")
        return ("a native library cannot be loaded (not installed, or built for other versions); install it "
                "or reinstall from the lock file (make setup)")
    if isinstance(error, ImportError):
        return ("a Python package is missing or broken on this machine; reinstall from the lock file "
                "(make setup) or rebuild the worker image")
    if isinstance(error, MemoryError):
        return "the worker ran out of memory; run fewer workers per node or use a node with more memory"
    if isinstance(error, OSError):
        return "the worker's system refused an operation; check its disk space, memory and file limits"
    if isinstance(error, _BUG_TYPES):
        return ("a bug in the pipeline, or a library of another version than the lock file's; rerun with "
                "--debug for the traceback")
    return "an unexpected error; rerun with --debug for the traceback"


def brief(error: BaseException) -> str:
    """The error's own words on one line (its first line: Ray appends notes below it)."""
    text = str(error).strip().splitlines()
    return " ".join(text[0].split())[:MESSAGE_CHARS] if text else type(error).__name__


def causes(error: BaseException) -> list[BaseException]:
    """`error` and what it wraps: Ray's `cause`, then `__cause__`/`__context__`."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        inner = getattr(error, "cause", None)
        error = inner if isinstance(inner, BaseException) else (error.__cause__ or error.__context__)
    return chain


def fault_in(error: BaseException) -> Fault | None:
    """The Fault that ended a run, as the driver receives it, or None when it is not one.

    Raised in a Ray task, it is in the chain of causes; raised while an actor started, Ray keeps
    only the remote traceback as text (`ActorDiedError`), whose line `...Fault: <line>` it is. An
    actor that failed to start with any other error is a fault too: its last line says which."""
    chain = causes(error)
    for inner in chain:
        if isinstance(inner, Fault):
            return inner
    for inner in chain:
        found = _FAULT_LINE.search(_ANSI.sub("", str(inner)))
        if found:
            return Fault(found.group(1).strip())
    for inner in chain:
        if getattr(inner, "_actor_init_failed", False):
            lines = [line.strip() for line in _ANSI.sub("", str(inner)).splitlines() if line.strip()]
            return Fault(f"a worker could not start: {lines[-1][:MESSAGE_CHARS] if lines else 'unknown error'}")
    for inner in chain:
        if type(inner).__name__ in _WORKER_DEATHS:
            return Fault(f"a worker process died on each try of the same batch ({type(inner).__name__}: "
                         f"{brief(inner)}) (likely cause: a native crash in a decoder or the codec on one of "
                         "the batch's inputs, the out-of-memory killer, or lost nodes; the Ray logs "
                         "(worker-*.err) show the crash)")
    return None


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "(not installed)"
