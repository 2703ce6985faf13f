"""Retrying recorded failures supersedes their rows with the supersede rule (pipeline/output/folder.py):
every id counts exactly once across tokens/, failures/ and retryable/ after every file operation,
a crash at any of them included; and output faults are named in one line."""

from __future__ import annotations

import errno
import os
import shutil

import fsspec.implementations.local
import numpy as np
import pytest

from pipeline.errors import OutputError
from pipeline.output.folder import (
    FAILURES_DIR,
    RETRYABLE_DIR,
    TMP_DIR,
    TOKENS_DIR,
    OutputFolder,
    failures_table,
)
from pipeline.output.shards import environment_versions, write_records
from pipeline.output.supersede import declarations_for, declared_void
from pipeline.records import ChunkInfo, EncodedChunk, Failure
from tests.support.outputs import read_rows

BROKEN = {"stage": "encode", "error_type": "OSError",
          "message": "Could not load this library: libtorchaudio.so: undefined symbol"}


REAL_REPLACE, REAL_RM_FILE = os.replace, fsspec.implementations.local.LocalFileSystem.rm_file


class Crash(BaseException):
    """The process dies here (nothing may catch it)."""


def encoded(name: str, chunk: int = 0, chunks: int = 1) -> EncodedChunk:
    return EncodedChunk(ChunkInfo(id=name, uri=f"/a/{name}", chunk_index=chunk, num_chunks=chunks, duration_s=1.0),
                        np.arange(5, dtype=np.uint16), np.arange(5, dtype=np.uint16))


def failed(name: str, kind: str = "AudioDecodeError", retryable: bool = False) -> Failure:
    return Failure(name, f"/a/{name}", "decode", kind, "bad bytes", retryable=retryable)


def broken_environment_output(root) -> OutputFolder:
    """What the pipeline wrote before this issue on a broken install: valid clips as failure rows
    (no version columns), beside a tokenized clip, a truly bad one and a retryable one."""
    output = OutputFolder(str(root))
    rows = [{"id": name, "uri": f"/a/{name}", **BROKEN} for name in ("v1", "v2", "v3")]
    output.write_shard(FAILURES_DIR, failures_table(rows))
    write_records(output, [encoded("ok"), failed("corrupt"), failed("flaky", "ConnectionError", retryable=True)], {})
    return output


def counted_once(output: OutputFolder, ids: set[str]) -> dict[str, str]:
    """id → the one folder it counts in, under the supersede rule; fails if any id counts twice."""
    keys = output.committed_keys()
    where: dict[str, list[str]] = {}
    for key, _ in keys.chunk_keys():
        where.setdefault(key, []).append(TOKENS_DIR) if TOKENS_DIR not in where.get(key, []) else None
    for key in keys.failed_ids().to_pylist():
        where.setdefault(key, []).append(FAILURES_DIR)
    for key in keys.retryable:
        where.setdefault(key, []).append(RETRYABLE_DIR)
    assert set(where) == ids, (sorted(where), sorted(ids))
    assert all(len(folders) == 1 for folders in where.values()), where
    return {key: folders[0] for key, folders in where.items()}


def physically_once(root) -> None:
    """After void rows are dropped, the files themselves hold every id once (plain readers)."""
    token_ids = {row["id"] for row in read_rows(root / TOKENS_DIR)}
    others = [row["id"] for folder in (FAILURES_DIR, RETRYABLE_DIR) for row in read_rows(root / folder)]
    assert len(others) == len(set(others)) and not token_ids & set(others)


def retry(output: OutputFolder, outcome: dict[str, object]) -> None:
    """One retry run's file operations: start (drop leftovers), select, commit, drop superseded."""
    keys = output.committed_keys()
    output.drop_superseded(keys.void)
    previous = dict(keys.retryable)
    previous.update((row["id"], row["shard"]) for row in output.failure_rows() if row["error_type"] == "OSError")
    records = [record for key, record in outcome.items() if key in previous]
    summary = write_records(output, records, {}, previous=previous)
    keys.add_summary(summary)
    output.drop_superseded(keys.void)


IDS = {"v1", "v2", "v3", "ok", "corrupt", "flaky"}
OUTCOME = {"v1": encoded("v1"), "v2": encoded("v2"), "v3": failed("v3", "AudioInputError"), "flaky": encoded("flaky")}


def test_a_retry_supersedes_the_rows_of_a_broken_environment(tmp_path):
    output = broken_environment_output(tmp_path)
    assert counted_once(output, IDS) == {"v1": "failures", "v2": "failures", "v3": "failures", "ok": "tokens",
                                         "corrupt": "failures", "flaky": "retryable"}
    retry(output, OUTCOME)
    assert counted_once(output, IDS) == {"v1": "tokens", "v2": "tokens", "v3": "failures", "ok": "tokens",
                                         "corrupt": "failures", "flaky": "tokens"}
    physically_once(tmp_path)
    assert not (tmp_path / RETRYABLE_DIR).exists()
    rows = {row["id"]: row for row in read_rows(tmp_path / FAILURES_DIR)}
    assert rows["v3"]["error_type"] == "AudioInputError" and rows["corrupt"]["error_type"] == "AudioDecodeError"
    versions = environment_versions()
    assert rows["v3"]["torch_version"] == versions["torch_version"] and versions["torch_version"]
    assert rows["v3"]["pipeline_version"] and rows["v3"]["libsndfile_version"]


def count_operations(monkeypatch, crash_at: int | None) -> list[str]:
    """Number every commit to the output (an os.replace or a file removal), crashing before one."""
    done: list[str] = []

    def step(name: str) -> None:
        if crash_at is not None and len(done) == crash_at:
            raise Crash(name)
        done.append(name)

    def replace(src, dst):
        step(f"replace {os.path.basename(os.path.dirname(dst))}/{os.path.basename(dst)}")
        return REAL_REPLACE(src, dst)

    def rm_file(self, path):
        step(f"remove {path.rsplit('/', 2)[-2]}/{path.rsplit('/', 1)[-1]}")
        return REAL_RM_FILE(self, path)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(fsspec.implementations.local.LocalFileSystem, "rm_file", rm_file)
    return done


def test_killing_the_retry_at_any_point_leaves_every_id_exactly_once(tmp_path, monkeypatch):
    pristine = tmp_path / "pristine"
    broken_environment_output(pristine)
    steps = count_operations(monkeypatch, None)
    retry(OutputFolder(str(shutil.copytree(pristine, tmp_path / "uninterrupted"))), OUTCOME)
    total = len(steps)
    assert total >= 4, steps  # the new shards, then the old ones rewritten or removed
    for crash_at in range(total + 1):
        root = tmp_path / f"crash-{crash_at}"
        shutil.copytree(pristine, root)
        count_operations(monkeypatch, crash_at)
        output = OutputFolder(str(root))
        try:
            retry(output, OUTCOME)
        except Crash:
            pass
        counted_once(output, IDS)  # at the instant of the crash
        count_operations(monkeypatch, None)
        retry(output, OUTCOME)  # the rerun of the same command
        assert counted_once(output, IDS)["v1"] == "tokens"
        physically_once(root)


def test_the_rule_ignores_a_shard_declaring_itself_and_rows_already_gone():
    declarations = {"failures/part-b.parquet": {"failures/part-a.parquet": ["x", "gone"],
                                                "failures/part-b.parquet": ["y"]}}
    holdings = {"failures/part-a.parquet": ["x", "z"], "failures/part-b.parquet": ["y"]}
    assert declared_void(declarations, holdings) == {"failures/part-a.parquet": {"x"}}
    assert declarations_for(["x", "y", "x", "unit.tar"], {"x": "f/1", "unit.tar": "f/2"}) == {"f/1": ["x"],
                                                                                               "f/2": ["unit.tar"]}


@pytest.mark.parametrize("where, error, words", [
    ("os.fsync", OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    ("os.replace", OSError(errno.EROFS, "Read-only file system"), "Read-only file system"),
    ("os.replace", PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
])
def test_a_failed_publish_says_why_in_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch, where, error,
                                                                               words):
    output = OutputFolder(str(tmp_path))
    output.publish("manifest.json", b"{}")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(where, fail)
    with pytest.raises(OutputError) as raised:
        output.write_shard(TOKENS_DIR, failures_table([{"id": "a", "uri": "/a", **BROKEN}]))
    message = str(raised.value)
    assert words in message and str(tmp_path / TOKENS_DIR) in message and "\n" not in message
    assert raised.value.__cause__ is error
    assert list((tmp_path / TMP_DIR).iterdir()) == []


def test_retry_failures_selects_all_rows_or_those_of_the_given_types_or_stages():
    from pipeline.tokenize.plan import select_failures

    rows = [{"id": "a", "stage": "encode", "error_type": "OSError"},
            {"id": "b", "stage": "decode", "error_type": "AudioDecodeError"},
            {"id": "c", "stage": "read", "error_type": "FileNotFoundError"}]
    assert select_failures(rows, "") == rows
    assert [r["id"] for r in select_failures(rows, "OSError")] == ["a"]
    assert [r["id"] for r in select_failures(rows, "read, AudioDecodeError")] == ["b", "c"]
    assert select_failures(rows, "ImportError") == []
