"""Checks a tokenize run's settings on the driver before Ray starts (the first step of
`plan.plan_run`), so that every mistake we can see ends in one line within seconds instead of a
traceback from inside an actor: numbers in range, credentials present for s3:// URLs, the source
exists and lists, the output is a writable folder, the checkpoint resolves and holds the variant's
files, a Hugging Face token is there for --push-to-hub; local weights load with the safe loader, and
the libraries the run uses (libsndfile, FFmpeg through PyAV, torchaudio's kernels) load and work
(`environment.check_libraries`, which every worker runs too).

Only the errors a source, an output or a checkpoint location can raise on a mistake or an
unreachable service (`known_io_errors`) become these lines, chained to their cause (`--debug`
shows it); any other error is a bug and reaches the job as one.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..environment import check_libraries
from ..errors import CheckpointError, ConfigError, OutputError, SourceError, UserError
from ..fsutil import options_for, protocol_of, unknown_protocol
from ..sources import dedupe_units, list_work, open_source
from .config import TokenizeConfig

# Settings that must be at least this much (None = not set, allowed where the default is None).
MINIMUMS = {
    "max_batch_windows": 1, "num_cpu_encoders": 1, "cpus_per_encoder": 1, "limit": 1, "rows_per_file": 1,
    "chunk_windows": 1, "read_retries": 1, "qa_samples": 0, "qa_ddim_steps": 1, "ray_num_cpus": 1,
}
AUDIOSET_HF = "hf://datasets/agkphysics/AudioSet"
HUB_PROBE_TIMEOUT_S = 10.0
MAX_EXIT_CODE = 255


@dataclass(frozen=True, slots=True)
class ResolvedRun:
    """What the checks found: the source and its units, the checkpoint's resolved location."""

    source: object
    units: list
    checkpoint: str
    synthetic: bool


def preflight(config: TokenizeConfig) -> ResolvedRun:
    """Raise a UserError (one line, with the fix) for the first problem found; cheap checks first."""
    check_settings(config)
    storage_options = config.storage_options()
    check_s3_credentials(config)
    source, units = check_source(config, storage_options)
    check_output(config.output, storage_options)
    checkpoint = check_checkpoint(config, storage_options)
    check_hub_token(config)
    check_weights(config, checkpoint)
    check_libraries()
    return ResolvedRun(source, units, checkpoint, is_synthetic(config.checkpoint, checkpoint))


def check_settings(config: TokenizeConfig) -> None:
    for name, minimum in MINIMUMS.items():
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {minimum} (got {value})")
    if not config.max_duration_s > 0:
        raise ConfigError(f"--max-duration-s must be positive (got {config.max_duration_s})")
    if not 0 <= config.retryable_exit_code <= MAX_EXIT_CODE:
        raise ConfigError(f"--retryable-exit-code must be 0 to {MAX_EXIT_CODE} (got {config.retryable_exit_code})")


def s3_urls(config: TokenizeConfig) -> list[str]:
    urls = (config.source, config.output, config.checkpoint, config.audio_root, config.class_labels)
    return [u for u in urls if u and protocol_of(u) in ("s3", "s3a")]


def check_s3_credentials(config: TokenizeConfig) -> None:
    """The AWS credential chain (environment, profile, SSO, web identity, instance role) must find
    something when an s3:// URL is used, unless --s3-anon; s3fs would otherwise fail inside a task."""
    urls = s3_urls(config)
    if not urls or config.s3_anon:
        return
    import botocore.exceptions
    import botocore.session

    try:
        credentials = botocore.session.Session(profile=config.aws_profile).get_credentials()
    except botocore.exceptions.ProfileNotFound as error:
        raise ConfigError(f"AWS profile {config.aws_profile!r} is not in ~/.aws/config or "
                          "~/.aws/credentials: check --aws-profile / $AWS_PROFILE") from error
    except botocore.exceptions.BotoCoreError as error:
        raise ConfigError(f"cannot load AWS credentials for {urls[0]}: {error}") from error
    if credentials is None:
        raise ConfigError(
            f"no AWS credentials found for {urls[0]}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE / --aws-profile (or run with an instance or pod role); "
            "--s3-anon reads public buckets")


def open_config_source(config: TokenizeConfig, storage_options: dict) -> tuple[object, list]:
    """The source `config` names, opened with its settings, and its units, deduplicated."""
    source = open_source(config.source, audio_root=config.audio_root, class_labels=config.class_labels,
                         split=source_split(config), storage_options=storage_options,
                         read_retries=config.read_retries, missing_inputs=config.missing_inputs,
                         dedupe=config.dedupe, allow_uri_prefixes=config.allow_uri_prefix or ())
    return source, dedupe_units(list_work(source), config.dedupe)


def source_split(config) -> str | None:
    """The HF dataset split to read: the one given, or AudioSet's balanced train split by default."""
    return config.split or ("bal_train" if config.source.startswith(AUDIOSET_HF) else None)


def check_source(config: TokenizeConfig, storage_options: dict) -> tuple[object, list]:
    """The source opens and lists (a manifest is read, so a missing uri column shows here)."""
    url = config.source
    check_protocol(url, "--source", SourceError)
    try:
        source, units = open_config_source(config, storage_options)
    except UserError:
        raise
    except FileNotFoundError as error:
        raise SourceError(f"source {url} does not exist: check the path or URL given to --source") from error
    except PermissionError as error:
        raise SourceError(f"permission denied reading source {url}: check the credentials or file "
                          "permissions") from error
    except known_io_errors() as error:
        raise SourceError(f"cannot read source {url}: {_brief(error)}") from error
    return source, units


def check_output(url: str, storage_options: dict) -> None:
    """The output is a folder (existing or creatable) we may write to: `OutputFolder.probe_writable`
    writes and deletes a file under OUT/_tmp/, so a missing bucket or a denied PutObject shows now,
    not after encoding."""
    from ..output.folder import OutputFolder

    check_protocol(url, "--output", OutputError)
    output = OutputFolder(url, storage_options)
    try:
        if output.fs.isfile(output.root):
            raise OutputError(f"output {url} is a file; --output takes a folder (new or existing)")
    except OutputError:
        raise
    except known_io_errors() as error:
        raise OutputError(f"cannot reach output {url}: {_brief(error)}") from error
    try:
        output.probe_writable()
    except known_io_errors() as error:
        raise OutputError(f"cannot write to output {url}: {_brief(error)}") from error


def check_checkpoint(config: TokenizeConfig, storage_options: dict) -> str:
    """The checkpoint resolves (synthetic:* → a cached folder) and holds the variant's encoder files
    (and the decoder when a QA spot check follows the run). Returns the resolved location."""
    from ..codecs.semanticodec.checkpoint import verify_checkpoint
    from ..codecs.semanticodec.synthetic import resolve_checkpoint_location

    need_decoder = config.qa_samples > 0
    check_hub_reachable(config, need_decoder)
    try:
        location = resolve_checkpoint_location(config.checkpoint, config.token_rate,
                                               config.semantic_vocab_size, with_decoder=need_decoder)
        record = verify_checkpoint(location, config.token_rate, config.semantic_vocab_size,
                                   need_decoder=need_decoder,
                                   storage_options=options_for(location, storage_options) or None)
    except UserError:
        raise
    except known_io_errors() as error:
        raise CheckpointError(f"cannot use checkpoint {config.checkpoint}: {_brief(error)}") from error
    return str(record.location)  # hf://repo@<commit>: every worker reads the same commit


def check_hub_reachable(config: TokenizeConfig, need_decoder: bool) -> None:
    """An hf:// checkpoint not yet in the local Hugging Face cache needs the Hub: one quick request
    says whether it answers, instead of minutes of retried downloads when the machine is offline."""
    import os
    import urllib.error
    import urllib.request

    from huggingface_hub import constants, try_to_load_from_cache

    from ..codecs.semanticodec.checkpoint import CheckpointSource
    from ..codecs.semanticodec.variants import SemantiCodecVariant

    if not config.checkpoint.startswith("hf://") or constants.HF_HUB_OFFLINE:
        return
    source = CheckpointSource(config.checkpoint)
    variant = SemantiCodecVariant(config.token_rate, config.semantic_vocab_size)
    if all(isinstance(try_to_load_from_cache(source.repo_id, name, revision=source.revision), str)
           for name in variant.files(decoder=need_decoder).values()):
        return  # cached: huggingface_hub serves them from the cache if the Hub cannot be reached
    try:
        request = urllib.request.Request(constants.ENDPOINT, method="HEAD")
        urllib.request.urlopen(request, timeout=HUB_PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # the Hub answered (whatever the status): the download will tell the rest
    except (OSError, ValueError) as error:
        hint = "; check HF_ENDPOINT" if os.environ.get("HF_ENDPOINT") else ""
        raise CheckpointError(
            f"cannot reach the Hugging Face Hub ({constants.ENDPOINT}: {getattr(error, 'reason', error)}) to "
            f"download {config.checkpoint}, and its {variant.name} files are not in the local cache: pass "
            f"--checkpoint with a folder holding them (or synthetic:small for an offline demo){hint}"
        ) from error


def check_hub_token(config: TokenizeConfig) -> None:
    """--push-to-hub needs a Hugging Face token: say so now, not after the whole run."""
    if not config.push_to_hub:
        return
    from huggingface_hub import get_token

    if not get_token():
        raise ConfigError(f"no Hugging Face token to push to {config.push_to_hub}: run `hf auth login` "
                          "or set HF_TOKEN (or leave out --push-to-hub)")


def is_synthetic(value: str, location: str) -> bool:
    """Random test weights: a synthetic:* value, or a folder carrying the synthetic marker."""
    from pathlib import Path

    from ..codecs.semanticodec.checkpoint import SYNTHETIC_MARKER

    if value.startswith("synthetic:"):
        return True
    return "://" not in location and (Path(location).expanduser() / SYNTHETIC_MARKER).is_file()


def _brief(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def check_protocol(url: str, flag: str, error: type[UserError]) -> None:
    """The URL's scheme is a filesystem fsspec knows (s3, gs, hf, http, ...) or a local path."""
    protocol = unknown_protocol(url)
    if protocol is not None:
        raise error(f"{flag} {url}: unknown protocol {protocol!r} (a local path, or a URL such as s3://, gs://, "
                    "hf://, https://)")


def known_io_errors() -> tuple[type[BaseException], ...]:
    """What reaching a source, an output or a checkpoint raises on a user's mistake or a service
    that does not answer: OS and network errors (fsspec's, s3fs's and the HTTP clients' are
    OSErrors), botocore's, huggingface_hub's (an invalid repo id too), and pyarrow's for a file
    that is not what its name says. Nothing else is caught: it would hide a bug."""
    import botocore.exceptions
    import huggingface_hub.errors
    import pyarrow

    return (OSError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
            huggingface_hub.errors.HfHubHTTPError, huggingface_hub.errors.HFValidationError, pyarrow.ArrowException)


def check_weights(config: TokenizeConfig, location: str) -> None:
    """Local weights are loaded as each encoder will load them (`torch.load(weights_only=True)`,
    the codebook without pickles), so a file the safe loader refuses (a pickle carrying code, a
    truncated file) is refused here in one line. Weights at a remote location are read by the
    encoders only: each one loads them at its start-up and refuses them there, in one line too."""
    from ..codecs.semanticodec.checkpoint import (
        CheckpointSource,
        load_codebook,
        load_state_dict,
        resolve_checkpoint,
    )
    from ..codecs.semanticodec.variants import SemantiCodecVariant

    source = CheckpointSource(location)
    if source.kind != "local":
        return
    files = resolve_checkpoint(source, SemantiCodecVariant(config.token_rate, config.semantic_vocab_size)).files
    load_state_dict(source.fetch(files["encoder"]))
    load_codebook(source.fetch(files["semantic_codebook"]), expected_rows=config.semantic_vocab_size)

