"""The output's bookkeeping without Ray: shard names, committed keys, the run fingerprint, the writer
lease (local disk and a real S3 API), shard tables from records, batch <-> record conversion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline.errors import OutputError
from pipeline.fsutil import url_to_fs
from pipeline.output.folder import (
    FAILURES_DIR,
    FINGERPRINT_FILE,
    RETRYABLE_DIR,
    TOKENS_DIR,
    OutputFolder,
    shard_digest,
)
from pipeline.output.identity import run_fingerprint
from pipeline.output.lease import LEASE_FILE, WriterLease
from pipeline.output.shards import write_records
from pipeline.records import STAGE_READ, AudioChunk, ChunkInfo, EncodedChunk, Failure
from pipeline.sources import ID_RULE_VERSION
from pipeline.tokenize.batch import batch_to_records, records_to_batch


def encoded(id: str, chunk: int = 0, num_chunks: int = 1, frames: int = 5) -> EncodedChunk:
    info = ChunkInfo(id=id, uri=f"/audio/{id}", chunk_index=chunk, num_chunks=num_chunks, duration_s=frames / 50,
                     source_sample_rate=16000, source_channels=1, labels=["/m/a"], meta={"text": "hi"})
    return EncodedChunk(info, np.arange(frames, dtype=np.uint16), np.arange(frames, dtype=np.uint16) + 1)


def test_shard_names_are_unambiguous_for_any_id():
    # joined with a separator, {x, y} and {"x\x1f0\ny"} gave the same name and one shard overwrote the other
    assert shard_digest([("x", 0), ("y", 0)]) != shard_digest([("x\x1f0\ny", 0)])
    assert shard_digest([("a", 1)]) != shard_digest([("a", 0), ("", 1)])
    assert shard_digest([("b", 0), ("a", 0)]) == shard_digest([("a", 0), ("b", 0)])  # order-free: retries rewrite


def test_two_batches_with_colliding_joined_keys_keep_both_shards(tmp_path):
    output = OutputFolder(str(tmp_path))
    write_records(output, [encoded("x"), encoded("y")], {"variant": "v"})
    write_records(output, [encoded("x\x1f0\ny")], {"variant": "v"})
    keys = output.committed_keys()
    assert {key for key, _ in keys.chunk_keys()} == {"x", "y", "x\x1f0\ny"}
    assert len(output.committed_files(TOKENS_DIR)) == 2


def test_committed_keys_counts_and_partial_inputs(tmp_path):
    output = OutputFolder(str(tmp_path))
    summary = write_records(output, [encoded("a"), encoded("long", 0, 3), encoded("long", 1, 3),
                                     Failure("bad", "/bad", "decode", "AudioDecodeError", "corrupt"),
                                     Failure("gone", "/gone", STAGE_READ, "FileNotFoundError", "no such file",
                                             retryable=True)], {"variant": "v"})
    assert (summary.token_rows, summary.failed, summary.retryable, summary.shards) == (3, 1, 1, 3)
    assert len(output.committed_files(FAILURES_DIR)) == 1 and len(output.committed_files(RETRYABLE_DIR)) == 1
    keys = output.committed_keys()
    # the retryable failure is not final, "long" lacks chunk 2
    complete, partial = keys.progress()
    assert sorted(complete.to_pylist()) == ["a", "bad"] and partial.to_pylist() == ["long"]
    assert keys.outcome_counts() == {"inputs": 4, "tokenized": 1, "failed": 1, "retryable": 1, "incomplete": 1}
    assert (keys.token_rows, keys.token_pairs, keys.failure_types) == (3, 15, {"AudioDecodeError": 1})
    assert keys.provenance == {"variant": "v"}
    folded = type(keys)()
    folded.add_summary(summary)
    assert folded.chunk_keys() == keys.chunk_keys() and folded.failed_ids().equals(keys.failed_ids())
    assert folded.outcome_counts() == keys.outcome_counts()


def test_committed_keys_from_large_footers_and_from_shards_without_them(tmp_path):
    import pyarrow.parquet as pq

    from pipeline.output.folder import KEYS_KEY, tokens_table
    from pipeline.output.shards import token_row

    output = OutputFolder(str(tmp_path))
    many = [encoded("x" * 100 + str(i)) for i in range(2000)]  # keys JSON well over one footer read
    write_records(output, many, {"variant": "v"})
    legacy = tokens_table([token_row(encoded("old"))])  # as written before footers carried keys
    (tmp_path / TOKENS_DIR / "part-legacy.parquet").parent.mkdir(exist_ok=True)
    pq.write_table(legacy, tmp_path / TOKENS_DIR / "part-legacy.parquet")
    assert KEYS_KEY.encode() not in (pq.read_metadata(tmp_path / TOKENS_DIR / "part-legacy.parquet").metadata or {})
    keys = output.committed_keys()
    assert len(keys.chunk_keys()) == 2001 and ("old", 0) in keys.chunk_keys() and keys.token_rows == 2001
    assert keys.token_pairs == 5 * 2001


def test_meta_and_labels_reach_the_token_rows(tmp_path):
    import pyarrow.dataset as pads

    output = OutputFolder(str(tmp_path))
    write_records(output, [encoded("a")], {})
    row = pads.dataset(tmp_path / TOKENS_DIR).to_table().to_pylist()[0]
    assert row["labels"] == ["/m/a"]
    if "meta" in row:  # the tokens schema's minor version 1 carries extra manifest columns
        assert json.loads(row["meta"]) == {"text": "hi"}


def test_fingerprint_refuses_a_rerun_with_other_settings(tmp_path):
    output = OutputFolder(str(tmp_path))
    first = run_fingerprint(variant="semanticodec-r100-v4096", dtype="float32", chunk_windows=30, tokens_schema_version=1)
    output.check_fingerprint(first)
    output.check_fingerprint(first)  # same settings: fine
    for change in ({"variant": "semanticodec-r50-v4096"}, {"chunk_windows": 2}, {"dtype": "bfloat16"}):
        with pytest.raises(OutputError, match="resuming would mix two corpora") as caught:
            output.check_fingerprint({**first, **change})
        assert "\n" not in str(caught.value)


def test_fingerprint_of_an_output_from_before_fingerprints(tmp_path):
    output = OutputFolder(str(tmp_path))
    new = run_fingerprint(variant="semanticodec-r50-v4096", dtype="float32", chunk_windows=30, tokens_schema_version=1)
    with pytest.raises(OutputError, match="variant"):
        output.check_fingerprint(new, {"variant": "semanticodec-r100-v4096", "dtype": "float32"})


def test_lease_is_exclusive_and_released(tmp_path):
    output = OutputFolder(str(tmp_path))
    with WriterLease(output):
        assert (tmp_path / LEASE_FILE).is_file()
        with pytest.raises(OutputError, match="another run is writing"):
            WriterLease(output).acquire()
    assert not (tmp_path / LEASE_FILE).exists()
    with WriterLease(output):  # free again
        pass


def test_stale_lease_of_a_dead_process_is_taken_over(tmp_path):
    output = OutputFolder(str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"run_id": "old", "host": os.uname().nodename, "pid": int(dead.stdout), "heartbeat_at": time.time()}
    (tmp_path / LEASE_FILE).write_text(json.dumps(record))
    lease = WriterLease(output)
    lease.acquire()
    assert json.loads((tmp_path / LEASE_FILE).read_text())["run_id"] == lease.owner["run_id"]
    lease.release()


def test_lease_of_another_host_is_judged_by_its_heartbeat_moving_not_by_its_clock(tmp_path):
    """A lease from another host whose heartbeat is stamped a day ahead (a skewed clock, or a
    garbled file) but does not move is stale once this run has watched it for stale_s of its own
    clock: it does not lock the output for a day. An hour-old stamp is no faster to take over."""
    output = OutputFolder(str(tmp_path))
    for stamp in (time.time() + 86400, time.time() - 3600):
        record = {"run_id": "old", "host": "elsewhere", "pid": 1, "beat": 7, "heartbeat_at": stamp}
        (tmp_path / LEASE_FILE).write_text(json.dumps(record))
        lease = WriterLease(output, stale_s=0.5)
        started = time.monotonic()
        lease.acquire()
        assert time.monotonic() - started >= 0.5  # watched, not judged by the stamp
        assert json.loads((tmp_path / LEASE_FILE).read_text())["run_id"] == lease.owner["run_id"]
        lease.release()
    (tmp_path / LEASE_FILE).write_text("{torn")
    with WriterLease(output, stale_s=0.2):  # a garbled lease that never changes is stale too
        pass


def test_a_live_lease_of_another_host_is_refused_whatever_the_clocks(tmp_path, monkeypatch):
    """The owner's heartbeat moves while this run watches: refused, even though this run's clock is
    300 s ahead (its wall-clock age would say 'stale') and the owner's is a day behind."""
    import threading

    from pipeline.output import lease as lease_module

    output = OutputFolder(str(tmp_path))
    stop = threading.Event()

    def owner_elsewhere():  # another machine's run: a moving heartbeat, stamped by a clock a day behind
        beat = 0
        while not stop.wait(0.05):
            beat += 1
            record = {"run_id": "remote", "host": "elsewhere", "pid": 1, "beat": beat,
                      "heartbeat_at": time.time() - 86400}
            output.publish(LEASE_FILE, json.dumps(record).encode())

    writer = threading.Thread(target=owner_elsewhere)
    writer.start()
    try:
        time.sleep(0.2)
        real_time = time.time
        monkeypatch.setattr(lease_module.time, "time", lambda: real_time() + 300)
        with pytest.raises(OutputError, match="host elsewhere, pid 1: its heartbeat moved within 5 s"):
            WriterLease(output, stale_s=5).acquire()
    finally:
        stop.set()
        writer.join()


def test_a_live_lease_on_this_host_is_refused_at_once_and_a_reused_pid_is_not_its_owner(tmp_path):
    output = OutputFolder(str(tmp_path))
    holder = WriterLease(output)  # alive (this process), heartbeat every 20 s: liveness decides, not the beat
    holder.acquire()
    started = time.monotonic()
    with pytest.raises(OutputError, match="it is alive on this host"):
        WriterLease(output).acquire()
    assert time.monotonic() - started < 5
    record = json.loads((tmp_path / LEASE_FILE).read_text())
    (tmp_path / LEASE_FILE).write_text(json.dumps({**record, "run_id": "before-reboot", "started": 1}))
    WriterLease(output).acquire()  # our pid, another start time: the owner died and the pid was reused
    holder._stop.set()


def test_owner_notices_a_lost_lease(tmp_path):
    output = OutputFolder(str(tmp_path))
    lease = WriterLease(output, heartbeat_s=0.05)
    lease.acquire()
    (tmp_path / LEASE_FILE).write_text(json.dumps({"run_id": "thief", "host": "h", "pid": 1, "heartbeat_at": time.time()}))
    time.sleep(0.3)
    with pytest.raises(OutputError, match="taken by another run"):
        lease.check()
    lease.release()
    assert json.loads((tmp_path / LEASE_FILE).read_text())["run_id"] == "thief"  # not ours to delete


def test_lease_on_s3_uses_a_conditional_put(monkeypatch):
    import boto3

    from tests.support.s3 import S3_ENV, MotoServer

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    with MotoServer() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="out")
        output = OutputFolder("s3://out/run1", {"s3": {"endpoint_url": endpoint}})
        first = WriterLease(output)
        first.acquire()
        with pytest.raises(OutputError, match="another run is writing"):
            WriterLease(output).acquire()
        first.release()
        with WriterLease(output):  # (released before the server stops: its heartbeat would fail)
            pass


def test_probe_writable_reports_an_unusable_output(tmp_path, monkeypatch):
    from tests.support.s3 import S3_ENV, MotoServer

    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(OutputError, match="cannot create output .*a_file/out: a parent of it is a file"):
        OutputFolder(str(tmp_path / "a_file" / "out")).probe_writable()
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    with MotoServer() as endpoint:  # no such bucket
        with pytest.raises(OutputError, match="cannot write to output s3://missing-bucket/run: the bucket does not"):
            OutputFolder("s3://missing-bucket/run", {"s3": {"endpoint_url": endpoint}}).probe_writable()


def test_a_folder_resolves_its_filesystem_once(tmp_path, monkeypatch):
    import pipeline.output.folder as folder_module

    resolved = []

    def counting(url, storage_options=None):
        resolved.append(url)
        return url_to_fs(url, storage_options)

    monkeypatch.setattr(folder_module, "url_to_fs", counting)
    output = OutputFolder(str(tmp_path / "out"))
    output.probe_writable()
    write_records(output, [encoded("a"), Failure("b", "/b", "decode", "AudioDecodeError", "bad")], {"codec": "x"})
    output.write_run_record({"counts": {}})
    keys = output.committed_keys()
    assert (keys.token_rows, keys.failed_ids().to_pylist(), output.read_run_record()) == (1, ["b"], {"counts": {}})
    assert output.files().keys() >= {"manifest.json"} and len(output.committed_files(TOKENS_DIR)) == 1
    assert resolved == [str(tmp_path / "out")]


def test_records_round_trip_through_a_ray_batch():
    chunk = AudioChunk(ChunkInfo(id="a", uri="/a", labels=None, meta={"speaker": "s1"}), np.ones(10, np.float32))
    records = [chunk, encoded("b"), Failure("c", "/c", "decode", "AudioDecodeError", "bad", retryable=False),
               Failure("d", "/d", STAGE_READ, "PermissionError", "denied", retryable=True)]
    back = batch_to_records(records_to_batch(records))
    assert isinstance(back[0], AudioChunk) and back[0].info == chunk.info
    np.testing.assert_array_equal(back[0].waveform, chunk.waveform)
    assert isinstance(back[1], EncodedChunk) and back[1].info == records[1].info
    np.testing.assert_array_equal(back[1].semantic, records[1].semantic)
    assert back[2:] == records[2:]


def test_an_output_made_with_the_first_id_rule_is_refused_in_one_line(tmp_path):
    """Outputs whose fingerprint has no id rule (and outputs from before fingerprints) were made
    with the first id rule: resuming them would give the same audio a second id."""
    current = run_fingerprint(variant="semanticodec-r100-v4096", dtype="float32", chunk_windows=30,
                              tokens_schema_version=1)
    assert current["id_rule"] == ID_RULE_VERSION == 2
    old = OutputFolder(str(tmp_path / "old"))
    old.publish(FINGERPRINT_FILE, json.dumps({k: v for k, v in current.items() if k != "id_rule"}).encode())
    older = OutputFolder(str(tmp_path / "older"))
    for folder, provenance in ((old, None), (older, {"variant": "semanticodec-r100-v4096", "dtype": "float32"})):
        with pytest.raises(OutputError, match="id_rule: output has 1, this run 2") as caught:
            folder.check_fingerprint(current, provenance)
        assert "\n" not in str(caught.value) and "another id rule" in str(caught.value)
    fresh = OutputFolder(str(tmp_path / "fresh"))
    fresh.check_fingerprint(current)
    fresh.check_fingerprint(current)


@pytest.mark.parametrize(("content", "problem"), [
    ('"semanticodec-r100-v4096"', "a JSON str, not an object"), ("[1, 2]", "a JSON list, not an object"),
    ('{"variant": "semanticodec-r1', "not JSON: "), (b"\xff\xfe", "not JSON: ")])
def test_a_damaged_fingerprint_names_the_file_and_the_way_out(tmp_path, content, problem):
    output = OutputFolder(str(tmp_path))
    path = tmp_path / "_fingerprint.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    fingerprint = run_fingerprint(variant="semanticodec-r100-v4096", dtype="float32", chunk_windows=30,
                                  tokens_schema_version=1)
    with pytest.raises(OutputError) as caught:
        output.check_fingerprint(fingerprint)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}/_fingerprint.json is damaged ({problem}") and "\n" not in message
    assert "delete it" in message and "--overwrite" in message
    path.unlink()  # the way out it names
    output.check_fingerprint(fingerprint)
    assert json.loads(path.read_text()) == fingerprint
