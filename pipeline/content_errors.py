"""The allow-list of content failures: the only errors that may write an input off.

An input becomes a row in failures/ only when the error is proven to be about its own bytes or
content. These are, per stage:

- read: the object does not exist and the user said it will not appear (`--missing-inputs
  fail`: FileNotFoundError); its URL names no filesystem (`fsutil.UnknownProtocolError`); a
  container whose bytes are not what they claim (a cut or corrupt tar: `tarfile.TarError`, a
  compressed stream cut short: `EOFError`, `zlib.error`; a Parquet file that is not one, or uses
  what pyarrow cannot read: `ArrowInvalid`, `ArrowNotImplementedError`); a rule of the project's
  own refusing the input (`errors.InputRefused`: a path outside the URI rule); the project's own
  checks on the data (an unusable id, a tar key without audio, a row without bytes, a duplicate
  id, a value over the size limit: failures recorded with a reason, no error).
- decode: libsndfile refusing the bytes (`soundfile.LibsndfileError`); FFmpeg refusing them, as
  PyAV reports it (invalid data, a stream cut short, a codec or container it has no decoder for,
  a feature it does not implement, an invalid stream parameter, FFmpeg's "unknown error"); the
  project's validation errors (`AudioInputError` and its subclasses: empty, no samples, NaN/inf,
  too long, a segment past the end, a truncated file).
- encode: the codec's validation of its input (`AudioInputError`).

Anything else (ImportError, an OSError from loading a library, MemoryError, a TypeError or
AttributeError in our code, an unknown RuntimeError from torch) is a fault of the worker, its
environment or the code: `admit_failure` raises it as a `pipeline.faults.Fault`, which stops the
run. Read errors that may pass (network, throttling, credentials, a missing object that may be
restored) are neither: sources record them as retryable (not final), and the next run retries them.

Library error classes are taken from the modules already imported (`sys.modules`): an error of a
library that could not even be imported cannot be one of its decode errors, and classifying it
must not import the broken library again.
"""

from __future__ import annotations

import sys

from .errors import AudioInputError, InputRefused
from .faults import Fault
from .fsutil import UnknownProtocolError

# Failure stages. `read` failures (the bytes could not be fetched: network, credentials, a missing
# object) are retryable unless the object is proven bad; `decode` and `encode` failures are pinned
# to the input's content.
STAGE_READ = "read"
STAGE_DECODE = "decode"
STAGE_ENCODE = "encode"

# PyAV's names for FFmpeg's verdicts on the bytes it was given (decoding only: nothing is opened by name).
FFMPEG_CONTENT_ERRORS = ("InvalidDataError", "EOFError", "DecoderNotFoundError", "DemuxerNotFoundError",
                         "PatchWelcomeError", "ArgumentError", "UnknownError")


def libsndfile_errors() -> tuple[type[BaseException], ...]:
    """libsndfile's refusal of the bytes it was given (soundfile opens only in-memory bytes)."""
    soundfile = sys.modules.get("soundfile")
    return (soundfile.LibsndfileError,) if soundfile is not None else ()


def ffmpeg_errors() -> tuple[type[BaseException], ...]:
    """FFmpeg's errors about the bytes it decodes, as PyAV raises them (`FFMPEG_CONTENT_ERRORS`)."""
    errors = sys.modules.get("av.error")
    return tuple(getattr(errors, name) for name in FFMPEG_CONTENT_ERRORS) if errors is not None else ()


def content_error_types(stage: str) -> tuple[type[BaseException], ...]:
    """The exception classes that prove an input's own content at fault in `stage`."""
    if stage == STAGE_READ:
        import tarfile
        import zlib

        pyarrow = sys.modules.get("pyarrow")
        arrow = (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError) if pyarrow is not None else ()
        return (AudioInputError, InputRefused, FileNotFoundError, UnknownProtocolError, tarfile.TarError, EOFError,
                zlib.error, *arrow)
    if stage == STAGE_DECODE:
        return (AudioInputError, *libsndfile_errors(), *ffmpeg_errors())
    if stage == STAGE_ENCODE:
        return (AudioInputError,)
    return ()


def is_content_error(stage: str, error: BaseException) -> bool:
    return isinstance(error, content_error_types(stage))


def admit_failure(stage: str, error: BaseException | str, *, retryable: bool = False) -> None:
    """Return when `error` may become a row for its input: a content error of `stage`, a reason
    the project wrote itself (a string), or a failure kept retryable (not final). Otherwise raise
    a `Fault` from it: the run stops rather than write the input off."""
    if retryable or isinstance(error, str) or is_content_error(stage, error):
        return
    raise Fault.from_error(f"the {stage} stage", error) from error
