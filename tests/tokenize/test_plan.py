"""The plan of a run (`plan_run`), made before Ray starts: what it checks, what it writes (nothing but
the writer lease, until the run starts), and what it finds left to do. No Ray here."""

from __future__ import annotations

import pytest

from pipeline.errors import OutputError
from pipeline.tokenize.config import TokenizeConfig
from pipeline.tokenize.plan import plan_run
from tests.support.audio import write_flac_clips


def config(source, output, checkpoint, **extra) -> TokenizeConfig:
    base = {"source": str(source), "output": str(output), "checkpoint": str(checkpoint), "token_rate": 100,
            "semantic_vocab_size": 4096, "chunk_windows": 2}
    return TokenizeConfig(**{**base, **extra})


def files_under(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_the_plan_lists_the_work_holds_the_lease_and_writes_nothing_else(small_checkpoint, tmp_path):
    write_flac_clips(tmp_path / "audio", 3, seconds=1.0)
    out = tmp_path / "out"
    with plan_run(config(tmp_path / "audio", out, small_checkpoint)) as plan:
        assert sorted(u.key for u in plan.units) == ["clip000.flac", "clip001.flac", "clip002.flac"]
        assert not plan.nothing_to_do and plan.total_inputs == 3 and not plan.resumed
        assert files_under(out) == ["_lease.json"]
    assert files_under(out) == []  # released; the fingerprint is recorded only once the run starts


def test_a_rerun_with_other_settings_is_refused_by_the_plan(small_checkpoint, tmp_path):
    write_flac_clips(tmp_path / "audio", 1, seconds=1.0)
    out = tmp_path / "out"
    with plan_run(config(tmp_path / "audio", out, small_checkpoint)) as plan:
        plan.start()  # what the run does first: the output's settings are recorded
    for change in ({"chunk_windows": 3}, {"token_rate": 50}, {"dtype": "bfloat16"}):
        with pytest.raises(OutputError, match="was written with other settings .* resuming would mix two corpora"):
            plan_run(config(tmp_path / "audio", out, small_checkpoint, **change))
    assert files_under(out) == ["_fingerprint.json"]  # each refusal released the lease
    with plan_run(config(tmp_path / "audio", out, small_checkpoint, chunk_windows=3, overwrite=True)) as plan:
        assert files_under(out) == ["_fingerprint.json", "_lease.json"]  # cleared only when the run starts
        plan.start()
    assert files_under(out) == ["_fingerprint.json"]
    with plan_run(config(tmp_path / "audio", out, small_checkpoint, chunk_windows=3)) as plan:
        assert len(plan.units) == 1


def test_decode_tasks_get_only_the_keys_they_need(small_checkpoint, tmp_path):
    import numpy as np

    from pipeline.output.folder import OutputFolder
    from pipeline.output.shards import write_records
    from pipeline.records import ChunkInfo, EncodedChunk
    from pipeline.tokenize.run import skip_sets

    def chunk(id: str, index: int, count: int) -> EncodedChunk:
        info = ChunkInfo(id=id, uri=f"/{id}", chunk_index=index, num_chunks=count, duration_s=1.0)
        return EncodedChunk(info, np.arange(3, dtype=np.uint16), np.arange(3, dtype=np.uint16))

    write_flac_clips(tmp_path / "audio", 3, seconds=1.0)
    out = tmp_path / "out"
    write_records(OutputFolder(str(out)), [chunk("clip000.flac", 0, 1), chunk("clip001.flac", 0, 2)], {})
    with plan_run(config(tmp_path / "audio", out, small_checkpoint)) as plan:
        assert sorted(u.key for u in plan.units) == ["clip001.flac", "clip002.flac"]  # clip000 is complete
        assert plan.complete.to_pylist() == ["clip000.flac"] and plan.partial == {"clip001.flac"}
        # no container: the complete ids stay on the driver; only the partial input's chunks travel
        complete, chunks, partial = skip_sets(plan)
        assert (len(complete), chunks, partial) == (0, {("clip001.flac", 0)}, {"clip001.flac"})
