"""Nothing lost, nothing duplicated: S3 answering 10% of requests with 503 SlowDown, and a job
killed mid-run then rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads

from pipeline.tokenize.config import TokenizeConfig
from tests.support.audio import flac_bytes
from tests.support.outputs import assert_each_id_once, read_output
from tests.support.processes import kill_session
from tests.support.runs import tokenize
from tests.support.s3 import FaultyProxy, MotoServer

REPO = Path(__file__).resolve().parents[2]


def test_transient_s3_faults_lose_and_duplicate_nothing(ray_local, small_checkpoint):
    import s3fs

    names = [f"clip_{i:02d}.flac" for i in range(16)]
    with MotoServer() as endpoint, FaultyProxy(endpoint, fault_rate=0.1, seed=1) as faulty:
        direct = s3fs.S3FileSystem(endpoint_url=endpoint)
        direct.mkdir("bucket")
        for i, name in enumerate(names):
            direct.pipe_file(f"bucket/in/{name}", flac_bytes(1.0 + (i % 3), i))
        config = TokenizeConfig(
            source="s3://bucket/in/", output="s3://bucket/out", checkpoint=str(small_checkpoint),
            semantic_vocab_size=4096, max_batch_windows=2, rows_per_file=2, s3_endpoint_url=faulty.url,
        )
        run_record = tokenize(config, progress=False)
        direct.invalidate_cache()
        token_files = direct.find("bucket/out/tokens")
        tokens = pads.dataset(token_files, filesystem=direct, format="parquet").to_table().to_pylist()
        failures = direct.find("bucket/out/failures")
    assert faulty.stats["faults"] > 0, faulty.stats
    assert not failures, "a transient fault became a recorded failure"
    assert_each_id_once(tokens, [], set(names))
    assert run_record["counts"]["tokenized"] == len(names)


def run_job(args, **popen):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen([sys.executable, "jobs/tokenize_audioset.py", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def test_killed_job_resumes_without_redoing_committed_shards(small_checkpoint, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    names = [f"c{i:02d}.flac" for i in range(40)]
    for i, name in enumerate(names):
        (audio / name).write_bytes(flac_bytes(3.0, i))
    out = tmp_path / "out"
    args = ["--source", str(audio), "--output", str(out), "--checkpoint", str(small_checkpoint),
            "--semantic-vocab-size", "4096", "--max-batch-windows", "2", "--rows-per-file", "2", "--quiet",
            "--ray-num-cpus", "2"]
    job = run_job(args, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "tokens").glob("part-*.parquet"))) < 3:
        assert job.poll() is None, job.stdout.read()[-3000:]
        time.sleep(0.05)
    kill_session(job)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "tokens").glob("part-*.parquet")}
    committed = sum(len(pads.dataset(out / "tokens" / n).to_table()) for n in before)
    assert 0 < committed < len(names), "kill the job mid-run"
    rerun = run_job(args)
    output, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, output[-3000:]
    tokens, failures, run_record = read_output(out)
    assert_each_id_once(tokens, failures, set(names))
    after = {p.name: p.stat().st_mtime_ns for p in (out / "tokens").glob("part-*.parquet")}
    assert all(after[name] == mtime for name, mtime in before.items()), "a committed shard was rewritten"
    assert run_record["run"]["resumed"] is True
    assert run_record["run"]["rows_this_run"] == len(names) - committed, "committed rows were encoded again"
    assert json.loads(output[output.index("{"):output.rindex("}") + 1])["summary"]["tokenized"] == len(names)
