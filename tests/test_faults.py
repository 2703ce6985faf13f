"""The allow-list of content failures (pipeline/content_errors.py) and faults (pipeline/faults.py):
only an error about an input's own bytes writes it off; every other error is a Fault, which
names the error and its likely cause in one line and stops the run."""

from __future__ import annotations

import errno
import io
import pickle

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio.ffmpeg import FFmpegReader
from pipeline.audio.load import load_chunks
from pipeline.content_errors import admit_failure, is_content_error
from pipeline.errors import AudioInputError
from pipeline.faults import Fault, fault_in, likely_cause
from pipeline.records import STAGE_DECODE, STAGE_ENCODE, STAGE_READ, Failure, SourceItem
from tests.support.audio import flac_bytes

LIBRARY_MISSING = OSError("cannot load library 'libsndfile.so.1': libsndfile.so.1: cannot open shared object file")
TORCHAUDIO_MISMATCH = OSError("Could not load this library: /venv/torchaudio/lib/libtorchaudio.so: undefined symbol: "
                              "torch_exception_get_what_without_backtrace")
NOT_CONTENT = [ImportError("No module named 'av'"), LIBRARY_MISSING, TORCHAUDIO_MISMATCH, MemoryError(),
               TypeError("unsupported operand type(s) for +: 'int' and 'NoneType'"), AttributeError("x"),
               RuntimeError("unknown error from torch"), ValueError("a value our code got wrong"),
               OSError(errno.ENOSPC, "No space left on device")]


def decoder_errors() -> list[BaseException]:
    """What libsndfile and FFmpeg raise for bytes that are not audio."""
    import av

    errors = []
    try:
        sf.read(io.BytesIO(b"RIFF....WAVEfmt definitely not audio"))
    except sf.LibsndfileError as error:
        errors.append(error)
    try:
        av.open(io.BytesIO(b"\x00" * 64 + b"not a container"))
    except av.FFmpegError as error:
        errors.append(error)
    assert len(errors) == 2
    return errors


def test_the_decoders_errors_on_bytes_and_our_validation_are_content_errors():
    for error in [*decoder_errors(), AudioInputError("empty file (0 bytes)")]:
        assert is_content_error(STAGE_DECODE, error), error
    assert is_content_error(STAGE_ENCODE, AudioInputError("3 NaN/inf samples"))
    assert not is_content_error(STAGE_ENCODE, decoder_errors()[0])  # the encoder decodes no bytes


@pytest.mark.parametrize("error", NOT_CONTENT, ids=lambda e: type(e).__name__)
def test_every_other_error_is_a_fault_in_every_stage(error):
    for stage in (STAGE_READ, STAGE_DECODE, STAGE_ENCODE):
        assert not is_content_error(stage, error)
        with pytest.raises(Fault) as raised:
            admit_failure(stage, error)
        assert raised.value.__cause__ is error  # chained: --debug shows it
        assert "\n" not in raised.value.line and type(error).__name__ in raised.value.line


def test_a_failure_is_made_only_of_a_content_error_a_reason_or_a_retryable_error():
    bad = Failure.from_error("a", "/a", STAGE_DECODE, AudioInputError("no samples"))
    assert (bad.error_type, bad.retryable) == ("AudioInputError", False)
    assert Failure.from_error("b", "/b", STAGE_READ, "no audio member for key 'x'", "MissingAudioMember").message
    transient = Failure.from_error("c", "/c", STAGE_READ, ConnectionResetError("reset"), retryable=True)
    assert transient.retryable  # not final: the next run retries it
    with pytest.raises(Fault, match="the decode stage failed with TypeError"):
        Failure.from_error("d", "/d", STAGE_DECODE, TypeError("bug"))


def test_a_missing_object_is_final_only_at_the_read_stage():
    assert is_content_error(STAGE_READ, FileNotFoundError("gone.wav"))
    assert not is_content_error(STAGE_DECODE, FileNotFoundError("/usr/lib/libsomething.so"))


def test_decode_records_bad_bytes_and_raises_everything_else(monkeypatch):
    item = SourceItem(id="x", uri="/x", data=b"not audio at all, not even close")
    (failure,) = load_chunks(item, chunk_windows=2, max_duration_s=60)
    assert isinstance(failure, Failure) and failure.error_type == "AudioDecodeError"

    def broken(data):
        raise LIBRARY_MISSING

    monkeypatch.setattr("pipeline.audio.load.READERS", (broken, FFmpegReader))  # libsndfile cannot be loaded
    good = SourceItem(id="y", uri="/y", data=flac_bytes(1.0, 0))
    with pytest.raises(OSError, match="libsndfile"):
        list(load_chunks(good, chunk_windows=2, max_duration_s=60))


def test_an_ffmpeg_error_that_is_not_about_the_bytes_is_not_a_decode_failure(monkeypatch):
    import av

    def out_of_memory(*args, **kwargs):
        raise av.error.MemoryError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(av, "open", out_of_memory)
    item = SourceItem(id="m4a", uri="/m4a", data=b"\x00\x00\x00\x18ftypM4A not really")  # soundfile refuses it first
    with pytest.raises(MemoryError):
        list(load_chunks(item, chunk_windows=2, max_duration_s=60))


def test_the_likely_cause_is_named_for_the_class_of_fault():
    assert "torchaudio" in likely_cause(TORCHAUDIO_MISMATCH) and "lock file" in likely_cause(TORCHAUDIO_MISMATCH)
    assert "native library" in likely_cause(LIBRARY_MISSING)
    assert "native library" in likely_cause(ImportError("libavcodec.so.61: cannot open shared object file"))
    assert "Python package" in likely_cause(ImportError("No module named 'av'"))
    assert "out of memory" in likely_cause(MemoryError())
    assert "disk space" in likely_cause(OSError(errno.ENOSPC, "No space left on device"))
    assert "bug" in likely_cause(TypeError("x"))


def test_a_fault_reaches_the_driver_however_ray_wraps_it():
    fault = Fault.from_error("the decode stage", TypeError("bug"))
    fault.args = (fault.args[0] + "\nFailed to apply UDF transform after 1/1 attempts (total backoff 0.0s).",)
    carried = pickle.loads(pickle.dumps(fault))  # as Ray ships it, with Ray Data's note appended
    assert carried.line == fault.line and "Failed to apply" not in carried.line

    class RayTaskErrorLike(RuntimeError):
        def __init__(self, cause):
            super().__init__("remote traceback ...")
            self.cause = cause

    assert fault_in(RayTaskErrorLike(carried)).line == fault.line
    traceback_text = f"Traceback (most recent call last):\n  File ...\n\x1b[36mpipeline.faults.Fault: {fault.line}\x1b[0m\n"
    assert fault_in(RuntimeError(traceback_text)).line == fault.line  # only the text survived


def test_an_actor_that_failed_to_start_is_a_fault_with_its_last_line():
    class ActorDiedLike(RuntimeError):
        _actor_init_failed = True

    died = ActorDiedLike("The actor died because of an error raised in its creation task\nTraceback ...\n"
                         "  File x\nRuntimeError: CUDA driver initialization failed\n")
    assert fault_in(died).line == "a worker could not start: RuntimeError: CUDA driver initialization failed"
    assert fault_in(ValueError("an ordinary error")) is None


def test_the_decoders_refusal_of_real_bad_audio_is_a_content_failure():
    cut = flac_bytes(5.0, 1)
    (failure,) = [r for r in load_chunks(SourceItem(id="cut", uri="/cut", data=cut[: len(cut) * 7 // 10]),
                                         chunk_windows=2, max_duration_s=60) if isinstance(r, Failure)]
    assert failure.error_type == "AudioDecodeError" and not failure.retryable
    noise = np.random.default_rng(0).standard_normal(100).astype(np.float32).tobytes()
    (failure,) = load_chunks(SourceItem(id="raw", uri="/raw", data=noise), chunk_windows=2, max_duration_s=60)
    assert failure.error_type == "AudioDecodeError"


def test_a_manifest_row_whose_url_names_no_filesystem_is_its_own_failure(tmp_path):
    from pipeline.sources import open_source

    manifest = tmp_path / "list.csv"
    manifest.write_text("id,uri\nbad,foo://bucket/x.wav\n")
    source = open_source(str(manifest))  # the URI rule refuses another scheme first
    (item,) = source.read_unit(source.list_units()[0])
    assert (item.failure.stage, item.failure.error_type, item.failure.retryable) == ("read", "UriOutsideRule", False)
    source = open_source(str(manifest), allow_uri_prefixes=("foo://bucket/",))  # widened: fsspec knows no foo
    (item,) = source.read_unit(source.list_units()[0])
    assert (item.failure.stage, item.failure.error_type, item.failure.retryable) == (
        "read", "UnknownProtocolError", False)
