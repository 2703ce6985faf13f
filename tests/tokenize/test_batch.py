"""The tables between the tokenize run's stages have one schema, whatever their rows hold: Ray Data
concatenates blocks of any mix (issue 17: a unit mixing chunks and a failure used to get a
tensor-typed failure column that no other block could be concatenated with)."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest

from pipeline.records import AudioChunk, ChunkInfo, EncodedChunk, Failure
from pipeline.tokenize.batch import BATCH_SCHEMA, ENCODER_COLUMNS, batch_to_records, records_to_batch


def chunk(name: str, samples: int, **info) -> AudioChunk:
    return AudioChunk(ChunkInfo(id=name, uri=f"/a/{name}", duration_s=samples / 16000, **info),
                      np.linspace(-1, 1, samples, dtype=np.float32))


def failure(name: str, message: str = "soundfile cannot decode it: Format not recognised") -> Failure:
    return Failure(name, f"/a/{name}", "decode", "AudioDecodeError", message)


def encoded(name: str, frames: int) -> EncodedChunk:
    tokens = np.arange(frames, dtype=np.uint16)
    return EncodedChunk(ChunkInfo(id=name, uri=f"/a/{name}", labels=["/m/09x0r"], meta={"split": "train"}),
                        tokens, tokens[::-1].copy())


MIXES = {
    "only chunks": [chunk("a.wav", 16000), chunk("b.flac", 32000, chunk_index=1, num_chunks=2)],
    "only failures": [failure("bad.flac"), failure("cut.flac", "truncated: header says 9 frames, only 7 decoded")],
    "both": [chunk("c.wav", 8000), failure("x.wav", "empty file (0 bytes)")],
    "a span and a failure": [AudioChunk(ChunkInfo(id="d.wav", uri="/a/d.wav"), np.ones(441, np.float32), 44100),
                             failure("y")],
    "empty": [],
}


@pytest.mark.parametrize("mix", MIXES)
def test_every_mix_has_the_one_schema_and_round_trips(mix):
    records = MIXES[mix]
    table = records_to_batch(records, units=[f"unit-{i}" for i in range(len(records))])
    assert table.schema == BATCH_SCHEMA and table.num_rows == len(records)
    back = batch_to_records(table)
    assert [type(r) for r in back] == [type(r) for r in records]
    for got, want in zip(back, records, strict=True):
        if isinstance(want, Failure):
            assert got == want
        else:
            assert got.info == want.info and got.resample_from == want.resample_from
            np.testing.assert_array_equal(got.waveform, want.waveform)
            assert got.waveform.flags.writeable  # torch warns on read-only arrays


def test_blocks_of_every_mix_concatenate_as_ray_data_does():
    from ray.data._internal.arrow_ops.transform_pyarrow import concat
    from ray.data._internal.delegating_block_builder import DelegatingBlockBuilder

    tables = [records_to_batch(records) for records in MIXES.values()]
    for first, second in itertools.permutations(tables, 2):
        builder = DelegatingBlockBuilder()  # what Ray Data's map outputs and batchers use
        builder.add_block(first)
        builder.add_block(second)
        joined = builder.build()
        assert joined.schema.equals(BATCH_SCHEMA, check_metadata=False)
        assert len(batch_to_records(joined)) == first.num_rows + second.num_rows
    everything = batch_to_records(concat(tables))  # Ray Data's concatenation of blocks for a batch
    expected = [r for records in MIXES.values() for r in records]
    assert [described(r) for r in everything] == [described(r) for r in expected]


def described(record) -> tuple:
    if isinstance(record, Failure):
        return ("failure", record.id, record.message)
    return (type(record).__name__, record.info.id, record.info.chunk_index, record.waveform.tolist())


def test_encoder_output_of_every_mix_concatenates():
    from ray.data._internal.arrow_ops.transform_pyarrow import concat

    def out(records):
        rows = len(records)
        return records_to_batch(records, encoder_passes=[1] * rows, encoder_windows=[2] * rows,
                                encoder_dtypes_json=["{}"] * rows, provenance_json=['{"codec": "x"}'] * rows)

    mixes = [[encoded("e.wav", 5), encoded("f.wav", 7)], [failure("z")], [encoded("g.wav", 3), failure("w")], []]
    joined = concat([out(records) for records in mixes])
    assert joined.schema.names == BATCH_SCHEMA.names + list(ENCODER_COLUMNS)
    back = batch_to_records(joined)
    assert [r.info.id if isinstance(r, EncodedChunk) else r.id for r in back] == ["e.wav", "f.wav", "z", "g.wav", "w"]
    np.testing.assert_array_equal(back[1].semantic, np.arange(7, dtype=np.uint16))
    assert back[0].info.labels == ["/m/09x0r"] and back[0].info.meta == {"split": "train"}


def test_rows_of_a_sliced_block_keep_their_own_audio():
    table = records_to_batch([chunk("a", 5), chunk("b", 7), chunk("c", 3)])
    middle = batch_to_records(pa.concat_tables([table.slice(1, 1), table.slice(2, 1)]))
    assert [len(r.waveform) for r in middle] == [7, 3]
    np.testing.assert_array_equal(middle[0].waveform, chunk("b", 7).waveform)
