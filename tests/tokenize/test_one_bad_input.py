"""One bad input never stops a run (issue 17): beside valid inputs, read as several units whose
blocks Ray Data concatenates, it becomes its one failure row; the run exits 0 and every valid
input is tokenized."""

from __future__ import annotations

import io
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from pipeline.tokenize.config import TokenizeConfig
from tests.support.audio import flac_bytes, make_tone, write_flac_clips
from tests.support.outputs import assert_each_id_once, read_output
from tests.support.runs import tokenize

NOT_AUDIO = b"<html><body>403 Forbidden</body></html>\n" * 4


def config(source, output, checkpoint, **extra) -> TokenizeConfig:
    # batches of 3 rows, units of 2 and 3 (or 1) rows: batches join the blocks of several units
    base = {"source": str(source), "output": str(output), "checkpoint": str(checkpoint), "semantic_vocab_size": 4096,
            "max_batch_windows": 3, "rows_per_file": 3, "chunk_windows": 2}
    return TokenizeConfig(**{**base, **extra})


def assert_one_failure(out, bad_id: str, valid: set[str], run_record: dict) -> dict:
    tokens, failures, _ = read_output(out, with_retryable=True)
    assert_each_id_once(tokens, failures, valid | {bad_id})
    assert [row["id"] for row in failures] == [bad_id], failures
    assert {row["id"] for row in tokens} == valid
    assert (run_record["counts"]["tokenized"], run_record["counts"]["failed"], run_record["counts"]["retryable"]) == (
        len(valid), 1, 0)
    return failures[0]


def test_a_flac_cut_at_70_percent_beside_valid_clips(ray_local, small_checkpoint, tmp_path):
    audio = tmp_path / "audio"
    valid = set(write_flac_clips(audio, 5, seconds=2.0))
    buffer = io.BytesIO()
    sf.write(buffer, make_tone(12 * 60.0, seed=9)[0], 16000, format="FLAC")  # 12 minutes, as 36 chunks
    whole = buffer.getvalue()
    (audio / "interrupted_download.flac").write_bytes(whole[: len(whole) * 7 // 10])
    out = tmp_path / "out"
    run_record = tokenize(config(audio, out, small_checkpoint), progress=False)
    failure = assert_one_failure(out, "interrupted_download.flac", valid, run_record)
    assert (failure["stage"], failure["error_type"]) == ("decode", "AudioDecodeError")


def test_tar_shards_with_a_member_that_is_not_audio(ray_local, small_checkpoint, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    valid = set()
    for index in range(2):
        with tarfile.open(shards / f"shard-{index:04d}.tar", "w") as tar:
            members = [(f"k{i}.flac", flac_bytes(1.5, 10 * index + i)) for i in range(2)]
            if index == 1:
                members.insert(1, ("scraped.wav", NOT_AUDIO))
            for name, payload in members:
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                valid.add(f"shard-{index:04d}.tar/{name.split('.')[0]}")
    out = tmp_path / "out"
    run_record = tokenize(config(shards, out, small_checkpoint), progress=False)
    valid.discard("shard-0001.tar/scraped")
    failure = assert_one_failure(out, "shard-0001.tar/scraped", valid, run_record)
    assert (failure["stage"], failure["error_type"]) == ("decode", "AudioDecodeError")


def test_hf_parquet_files_with_a_row_that_is_not_audio(ray_local, small_checkpoint, tmp_path):
    folder = tmp_path / "hf" / "data" / "train"
    folder.mkdir(parents=True)
    valid = set()
    for index in range(2):
        rows = [{"id": f"f{index}r{i}", "audio": {"bytes": flac_bytes(1.5, 10 * index + i), "path": f"r{i}.flac"}}
                for i in range(2)]
        valid.update(row["id"] for row in rows)
        if index == 1:
            rows.insert(1, {"id": "not_audio", "audio": {"bytes": NOT_AUDIO, "path": "x.flac"}})
        pq.write_table(pa.Table.from_pylist(rows), folder / f"part{index}.parquet")
    out = tmp_path / "out"
    run_record = tokenize(config(tmp_path / "hf", out, small_checkpoint), progress=False)
    failure = assert_one_failure(out, "not_audio", valid, run_record)
    assert (failure["stage"], failure["error_type"]) == ("decode", "AudioDecodeError")


class _Folder:
    """A source whose one unit holds the given items (as read by a decode task, without Ray)."""

    def __init__(self, *items) -> None:
        self.items = items

    def read_unit(self, unit):
        yield from self.items


def decoded_rows(source, **settings) -> list:
    from pipeline.codecs.semanticodec.variants import SemantiCodecVariant
    from pipeline.sources.base import WorkUnit
    from pipeline.sources.work_list import units_table
    from pipeline.tokenize.batch import batch_to_records
    from pipeline.tokenize.stages import ReadDecode

    stage = ReadDecode(source, SemantiCodecVariant(100, 4096), (set(), set(), set()), chunk_windows=1,
                       max_duration_s=3600, **settings)
    return [r for table in stage(units_table([WorkUnit("unit", "unit")])) for r in batch_to_records(table)]


def cut_flac(seconds: float) -> bytes:
    whole = flac_bytes(seconds, 3)
    return whole[: len(whole) * 7 // 10]


def test_a_long_file_found_cut_part_way_sends_no_chunk_on(monkeypatch):
    from pipeline.records import Failure, SourceItem

    rows = decoded_rows(_Folder(SourceItem(id="cut", uri="/cut", data=cut_flac(60.0)),
                                SourceItem(id="ok", uri="/ok", data=flac_bytes(12.0, 4))))
    assert [(type(r).__name__, r.id if isinstance(r, Failure) else r.info.id) for r in rows] == [
        ("Failure", "cut"), ("AudioChunk", "ok"), ("AudioChunk", "ok")]  # 60 s in 10.24 s chunks: none sent
    assert not rows[0].retryable


def test_beyond_the_held_bytes_chunks_go_on_and_a_late_failure_stays_retryable(monkeypatch):
    from pipeline.records import AudioChunk, Failure, SourceItem

    monkeypatch.setattr("pipeline.tokenize.stages.HELD_CHUNK_BYTES", 1)  # every chunk goes on at once
    rows = decoded_rows(_Folder(SourceItem(id="cut", uri="/cut", data=cut_flac(60.0))))
    assert len(rows) > 1 and all(isinstance(r, AudioChunk) for r in rows[:-1]) and isinstance(rows[-1], Failure)
    assert rows[-1].retryable and "already committed" in rows[-1].message
