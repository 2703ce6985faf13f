"""Each chunk records the span of its source object it covers, in the object's own time (issue 18):
a segment's offset plus the chunk's start, on every decode path (whole, streamed, resampler spans)."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio.load import load_chunks
from pipeline.records import AudioChunk, SourceItem


def wav(seconds: float, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, (0.1 * np.random.default_rng(0).standard_normal(int(seconds * rate))).astype(np.float32), rate,
             format="WAV")
    return buffer.getvalue()


@pytest.mark.parametrize("rate, resample", [(16000, True), (44100, True), (44100, False)])
@pytest.mark.parametrize("start_s, end_s", [(None, None), (3.25, None), (3.25, 30.0)])
def test_chunk_spans_are_in_the_files_own_time(rate, resample, start_s, end_s):
    item = SourceItem(id="x", uri="/x.wav", data=wav(32.0, rate), start_s=start_s, end_s=end_s)
    chunks = list(load_chunks(item, chunk_windows=1, max_duration_s=100, resample=resample))
    assert chunks and all(isinstance(c, AudioChunk) for c in chunks)
    infos = [c.info for c in chunks]
    assert infos[0].source_start_s == pytest.approx(start_s or 0.0)
    assert infos[-1].source_end_s == pytest.approx(end_s or 32.0, abs=1e-3)
    for previous, info in itertools.pairwise(infos):
        assert info.source_start_s == pytest.approx(previous.source_end_s)
    for info in infos:
        assert info.source_start_s == pytest.approx((start_s or 0.0) + info.chunk_start_s)
        assert info.source_end_s - info.source_start_s == pytest.approx(info.duration_s)


@pytest.mark.parametrize("resample", [True, False])
def test_a_short_segment_decoded_whole_keeps_its_offset(resample):
    item = SourceItem(id="x", uri="/x.wav", data=wav(3.0, 22050), start_s=0.5, end_s=2.5)
    [chunk] = load_chunks(item, chunk_windows=1, max_duration_s=100, resample=resample)
    assert (chunk.info.chunk_start_s, chunk.info.source_start_s) == (0.0, 0.5)
    assert chunk.info.source_end_s == pytest.approx(2.5, abs=1e-3)
