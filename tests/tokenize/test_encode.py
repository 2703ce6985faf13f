"""The encode step writes a chunk off only when the codec refuses its content; any other error
(a library, a bug, a device) propagates, so that no valid input becomes a failure row."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.codecs.semanticodec.variants import SemantiCodecVariant
from pipeline.errors import AudioInputError
from pipeline.records import AudioChunk, ChunkInfo, EncodedChunk, Failure
from pipeline.tokenize.encode import encode_chunks


class FakeCodec:
    """Tokens for every clip, or the error `fail_with` when a clip holds the value 9."""

    variant = SemantiCodecVariant(100, 4096)
    device = "cpu"

    def __init__(self, fail_with: BaseException) -> None:
        self.fail_with = fail_with

    def encode_prepared(self, clips):
        if any((np.asarray(clip.samples) == 9).any() for clip in clips):
            raise self.fail_with
        return [np.ones((1024, 2), np.int64) for _ in clips]


def chunk(name: str, value: float) -> AudioChunk:
    return AudioChunk(ChunkInfo(id=name, uri=f"/{name}", duration_s=10.24), np.full(163840, value, np.float32))


def test_the_chunk_whose_content_the_codec_refuses_is_the_one_failure():
    out = encode_chunks(FakeCodec(AudioInputError("3 NaN/inf samples")), [chunk("a", 0.1), chunk("b", 9), chunk("c", 0.2)])
    assert [type(r) for r in out] == [EncodedChunk, Failure, EncodedChunk]
    assert (out[1].id, out[1].stage, out[1].error_type, out[1].retryable) == ("b", "encode", "AudioInputError", False)


@pytest.mark.parametrize("error", [ImportError("cannot import name 'x'"), TypeError("bug"),
                                   RuntimeError("CUDA error: an illegal memory access was encountered"),
                                   OSError("libtorchaudio.so: undefined symbol")], ids=lambda e: type(e).__name__)
def test_any_other_error_propagates_and_writes_nothing_off(error):
    with pytest.raises(type(error)):
        encode_chunks(FakeCodec(error), [chunk("a", 0.1), chunk("b", 9)])
