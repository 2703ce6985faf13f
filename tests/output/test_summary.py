"""A write task's summary (`ShardSummary`): what `write_records` reports, how Ray Data carries it, how
the driver adds it up; footers hold the codec's provenance, and those written with run settings in
it (before they were kept out) still give a run record whose codec is the codec's alone."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa

from pipeline.output.folder import OutputFolder
from pipeline.output.run_record import run_record_from_counts
from pipeline.output.shards import write_records
from pipeline.output.summary import ShardSummary
from pipeline.records import STAGE_READ, ChunkInfo, EncodedChunk, Failure
from pipeline.tokenize.config import TokenizeConfig


def encoded(id: str, chunk: int = 0, num_chunks: int = 1) -> EncodedChunk:
    info = ChunkInfo(id=id, uri=f"/{id}", chunk_index=chunk, num_chunks=num_chunks, duration_s=1.5,
                     source_sample_rate=16000, source_channels=1)
    return EncodedChunk(info, np.arange(3, dtype=np.uint16), np.arange(3, dtype=np.uint16))


def test_write_records_reports_counts_and_keys_and_ray_carries_them_unchanged(tmp_path):
    output = OutputFolder(str(tmp_path))
    summary = write_records(output, [encoded("a"), encoded("long", 0, 2),
                                     Failure("bad", "/bad", "decode", "AudioDecodeError", "corrupt"),
                                     Failure("gone", "/gone", STAGE_READ, "FileNotFoundError", "no", retryable=True)],
                            {"variant": "v"})
    assert (summary.token_rows, summary.failed, summary.retryable, summary.rows, summary.shards) == (2, 1, 1, 4, 3)
    assert summary.inputs_done == 3 and summary.audio_s == 3.0 and summary.token_pairs == 6
    assert summary.failure_types == Counter(AudioDecodeError=1) and summary.retryable_types == Counter(
        FileNotFoundError=1)
    assert summary.token_keys == [["a", 0, 1], ["long", 0, 2]] and summary.failed_ids == ["bad"]
    assert [key for key, _ in summary.retryable_ids] == ["gone"] and summary.provenance == {"variant": "v"}
    carried = pa.Table.from_pylist([summary.to_row()]).to_pylist()[0]  # what a write task hands Ray Data
    assert ShardSummary.from_row(carried) == summary


def test_summaries_add_up_and_a_total_keeps_counts_only():
    first = ShardSummary(token_rows=2, audio_s=1.5, shards=1, failure_types=Counter(X=1), token_keys=[["a", 0, 1]],
                         superseded={"failures/p.parquet": ["a"]}, dtype_per_component={"fbank": "float32"})
    second = ShardSummary(token_rows=1, failed=1, audio_s=0.5, shards=2, failure_types=Counter(X=1, Y=2),
                          failed_ids=["b"], superseded={"failures/p.parquet": ["c"], "retryable/q.parquet": ["d"]},
                          provenance={"variant": "v"})
    total = sum((first, second), ShardSummary())
    assert (total.token_rows, total.failed, total.rows, total.audio_s, total.shards) == (3, 1, 4, 2.0, 3)
    assert total.failure_types == Counter(X=2, Y=2)
    assert total.token_keys == [["a", 0, 1]] and total.failed_ids == ["b"]
    assert total.superseded == {"failures/p.parquet": ["a", "c"], "retryable/q.parquet": ["d"]}
    assert total.dtype_per_component == {"fbank": "float32"} and total.provenance == {"variant": "v"}
    counts = total.without_keys()
    assert (counts.token_keys, counts.failed_ids, counts.retryable_ids, counts.superseded) == ([], [], [], {})
    assert counts.rows == 4 and counts.failure_types == total.failure_types


def test_run_settings_in_footers_of_earlier_outputs_stay_out_of_the_run_records_codec(tmp_path):
    output = OutputFolder(str(tmp_path))
    codec = {"codec": "semanticodec", "variant": "semanticodec-r100-v4096", "dtype": "float32", "files": {}}
    write_records(output, [encoded("a")], {**codec, "pipeline_version": "0.9", "batch_size": 16,
                                           "max_batch_windows": 16, "device": "cpu"})
    keys = output.committed_keys()
    assert keys.provenance["batch_size"] == 16  # such a footer is read as it is
    config = TokenizeConfig(source="/in", output=str(tmp_path), checkpoint="synthetic:small", semantic_vocab_size=4096)
    run_record = run_record_from_counts(config=config, source_kind="files", keys=keys, run=ShardSummary(),
                                    encoder={"batch_rows": 8, "num_encoders": 1, "device": "cpu"},
                                    wall_time_s=1.0, resumed=True)
    assert run_record["codec"] == codec
    assert run_record["run"]["batch_size"] == 8 and run_record["counts"]["tokenized"] == 1


def test_each_shards_footer_reads_back_as_the_summary_its_write_reported(tmp_path):
    import json
    from dataclasses import replace

    import pyarrow.parquet as pq

    from pipeline.output.folder import KEYS_KEY, PROVENANCE_KEY

    output = OutputFolder(str(tmp_path))
    summary = write_records(output, [encoded("a"), encoded("long", 0, 2),
                                     Failure("bad", "/bad", "decode", "AudioDecodeError", "corrupt"),
                                     Failure("gone", "/gone", STAGE_READ, "FileNotFoundError", "no", retryable=True)],
                            {"variant": "v"}, previous={"bad": "retryable/part-old.parquet"})
    total = ShardSummary()
    for path in sorted(tmp_path.glob("*/part-*.parquet")):
        metadata = pq.read_metadata(path).metadata
        footer = json.loads(metadata[KEYS_KEY.encode()])
        if PROVENANCE_KEY.encode() in metadata:
            footer["provenance"] = json.loads(metadata[PROVENANCE_KEY.encode()])
        total += ShardSummary.from_footer(path.parent.name, f"{path.parent.name}/{path.name}", footer)
    assert replace(total, inputs_done=summary.inputs_done) == summary  # progress is the one fact footers lack
    assert total.superseded == {"retryable/part-old.parquet": ["bad"]}
    (failures,) = tmp_path.glob("failures/part-*.parquet")
    footer = json.loads(pq.read_metadata(failures).metadata[KEYS_KEY.encode()])
    kept = ShardSummary.from_footer("failures", f"failures/{failures.name}", footer, void={"bad"})
    assert (kept.failed, kept.failed_ids, kept.failure_types) == (0, [], Counter())
