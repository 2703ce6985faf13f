"""The key index on an object store: a resume reads the footers of unchanged shards from one file,
and any shard written, rewritten or removed since is read from its own footer."""

from __future__ import annotations

import boto3
import numpy as np
import pytest

import pipeline.output.folder as folder_module
from pipeline.output.folder import CommittedKeys, OutputFolder
from pipeline.output.key_index import INDEX_FILE
from pipeline.output.shards import write_records
from pipeline.records import ChunkInfo, EncodedChunk, Failure
from tests.support.s3 import S3_ENV, MotoServer


def encoded(id: str) -> EncodedChunk:
    info = ChunkInfo(id=id, uri=f"/{id}", duration_s=1.0)
    return EncodedChunk(info, np.arange(3, dtype=np.uint16), np.arange(3, dtype=np.uint16))


def books(keys: CommittedKeys) -> tuple:
    return (sorted(keys.chunk_keys()), sorted(keys.failed_ids().to_pylist()), keys.retryable, keys.void,
            keys.outcome_counts(), keys.token_rows, keys.failure_types, keys.token_files, keys.failure_files)


@pytest.fixture
def s3_output(monkeypatch):
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    with MotoServer() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="out")
        yield OutputFolder("s3://out/run1", {"s3": {"endpoint_url": endpoint}})


def footer_reads(monkeypatch) -> list[str]:
    read = []
    original = folder_module._shard_keys

    def counted(fs, path, size, *, tokens):
        read.append(path.rsplit("/", 2)[-2])
        return original(fs, path, size, tokens=tokens)

    monkeypatch.setattr(folder_module, "_shard_keys", counted)
    return read


def test_unchanged_shards_are_read_from_the_index_and_changed_ones_from_their_footers(s3_output, monkeypatch):
    output = s3_output
    write_records(output, [encoded("a"), encoded("b"), Failure("c", "/c", "decode", "AudioDecodeError", "bad")],
                  {"variant": "v"})
    write_records(output, [Failure("d", "/d", "read", "ConnectionError", "reset", retryable=True)], {})
    read = footer_reads(monkeypatch)
    first = output.committed_keys()
    assert sorted(read) == ["failures", "retryable", "tokens"] and output.fs.exists(output.path(INDEX_FILE))
    read.clear()
    assert books(output.committed_keys()) == books(first) and read == []  # one request, no footer

    # a retry: its new row supersedes the retryable one, which is then removed (its shard deleted)
    write_records(output, [encoded("d")], {"variant": "v"}, previous={"d": next(iter(first.retryable.values()))})
    keys = output.committed_keys()
    assert read == ["tokens"] and keys.void  # the new shard alone
    output.drop_superseded(keys.void)
    read.clear()
    after = output.committed_keys()
    assert read == [] and sorted(id for id, _ in after.chunk_keys()) == ["a", "b", "d"] and not after.retryable
    assert after.outcome_counts() == {"inputs": 4, "tokenized": 3, "failed": 1, "retryable": 0, "incomplete": 0}


def test_a_shard_rewritten_in_place_is_read_again_and_a_damaged_index_is_rebuilt(s3_output, monkeypatch, caplog):
    output = s3_output
    write_records(output, [Failure(i, f"/{i}", "decode", "AudioDecodeError", "bad") for i in "xyz"], {})
    write_records(output, [encoded("x")], {}, previous={"x": output.committed_files("failures")[0].split("/run1/")[1]})
    keys = output.committed_keys()
    read = footer_reads(monkeypatch)
    output.drop_superseded(keys.void)  # failures/part-...: rewritten under the same name without "x"
    after = output.committed_keys()
    assert read == ["failures"] and sorted(after.failed_ids().to_pylist()) == ["y", "z"]
    output.fs.pipe_file(output.path(INDEX_FILE), b"not parquet")
    read.clear()
    assert books(output.committed_keys()) == books(after) and sorted(read) == ["failures", "tokens"]
    assert "key index" in caplog.text and "damaged" in caplog.text
    read.clear()
    output.committed_keys()
    assert read == []  # rebuilt


def test_local_outputs_keep_no_index(tmp_path):
    output = OutputFolder(str(tmp_path))
    write_records(output, [encoded("a")], {})
    output.committed_keys()
    output.refresh_key_index()
    assert not (tmp_path / INDEX_FILE).exists()
