"""The readers behind `audio.load`: one `AudioReader` protocol, tried in turn by `open_audio`, which
keeps each reader's reason for refusing the bytes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.audio.ffmpeg import FFmpegReader
from pipeline.audio.libsndfile import SoundfileReader
from pipeline.audio.load import READERS
from pipeline.audio.readers import AudioDecodeError, open_audio
from pipeline.errors import AudioInputError
from tests.support.audio import make_tone


class Refuses:
    def __init__(self, reason: str) -> None:
        self.reason, self.tried = reason, 0

    def __call__(self, data: bytes):
        self.tried += 1
        raise AudioInputError(self.reason)


class Takes:
    def __init__(self, rate: int = 16000) -> None:
        self.rate, self.closed = rate, False

    def __call__(self, data: bytes):
        return self

    def close(self) -> None:
        self.closed = True


def test_the_first_reader_that_takes_the_bytes_is_used_and_the_rest_are_not_tried():
    first, reader, last = Refuses("no."), Takes(), Refuses("never asked")
    assert open_audio(b"bytes", [first, reader, last]) is reader
    assert (first.tried, last.tried) == (1, 0)


def test_every_readers_reason_is_kept_in_order():
    with pytest.raises(AudioDecodeError) as error:
        open_audio(b"bytes", [Refuses("soundfile cannot decode it: Format not recognised."),
                              Refuses("FFmpeg cannot decode it: Invalid data found when processing input")])
    assert str(error.value) == ("soundfile cannot decode it: Format not recognised; "
                                "FFmpeg cannot decode it: Invalid data found when processing input")


def test_an_error_that_is_no_refusal_stops_the_loop():
    """A reader whose library cannot load says nothing about the bytes: no other reader is tried."""
    def broken(data):
        raise OSError("cannot load library 'libsndfile.so'")

    after = Refuses("never asked")
    with pytest.raises(OSError, match="libsndfile"):
        open_audio(b"bytes", [broken, after])
    assert after.tried == 0


def test_empty_bytes_and_an_invalid_rate_are_refused_whoever_reads_them():
    never = Refuses("never asked")
    with pytest.raises(AudioDecodeError, match=r"^empty file \(0 bytes\)$"):
        open_audio(b"", [never])
    assert never.tried == 0
    reader = Takes(rate=0)
    with pytest.raises(AudioDecodeError, match="^invalid sample rate 0$"):
        open_audio(b"bytes", [reader])
    assert reader.closed


def test_both_readers_give_the_same_audio_through_the_protocol():
    """A stereo WAV read by soundfile and by FFmpeg: same rate, channels and channel-0 samples."""
    import io

    import soundfile as sf

    wave = make_tone(2.0, 22050, channels=2)
    buffer = io.BytesIO()
    sf.write(buffer, wave.T, 22050, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()
    assert READERS == (SoundfileReader, FFmpegReader)
    readers = [SoundfileReader(data), FFmpegReader(data)]
    try:
        assert {(reader.rate, reader.channels) for reader in readers} == {(22050, 2)}
        assert readers[0].exact_length and not readers[1].exact_length
        got = [np.concatenate(list(reader.blocks(1000, 30000, block=4096))) for reader in readers]
        np.testing.assert_array_equal(got[0], got[1])
        assert len(got[0]) == 30000
        np.testing.assert_allclose(got[0], wave[0, 1000:31000], atol=1 / 32768)
    finally:
        for reader in readers:
            reader.close()
