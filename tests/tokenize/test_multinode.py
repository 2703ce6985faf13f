"""On a Ray cluster of three nodes (one machine, each node its own raylet with its own CPUs: 1 for the
head, which hosts the driver, and 2 + 2 for the workers): local paths refused in one line before any
work, default CPU encoder sizing that finishes, a worker node killed mid-run that loses and
duplicates nothing once the job is rerun. Each job runs as a user runs it (a driver process joining
the cluster through RAY_ADDRESS), under a timeout, so a hang fails the test instead of blocking CI.
The nodes share this machine's disk, which is what --shared-fs declares."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from tests.support.audio import flac_bytes
from tests.support.outputs import assert_each_id_once, read_output
from tests.support.s3 import S3_ENV, MotoServer

REPO = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_S = 300
WORKER_CPUS = (2, 2)


@pytest.fixture(scope="module")
def cluster():
    """Nodes of 1, 2 and 2 CPUs; stopped by the cluster's own shutdown (its processes, by handle)."""
    from ray.cluster_utils import Cluster

    temp = Path(tempfile.mkdtemp(prefix="rayc-", dir="/tmp"))  # Ray's socket paths must stay short
    (temp / "ray").mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_TMPDIR", str(temp))  # where the cluster records its address: not the shared /tmp/ray
        nodes = Cluster(initialize_head=True,
                        head_node_args={"num_cpus": 1, "temp_dir": str(temp), "include_dashboard": False})
        try:
            for cpus in WORKER_CPUS:
                nodes.add_node(num_cpus=cpus, temp_dir=str(temp))
            nodes.wait_for_nodes()
            yield nodes
        finally:
            nodes.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


def job_env(cluster, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PIPELINE_DEBUG"}
    return {**env, "RAY_ADDRESS": cluster.address, **extra}


def run_job(cluster, args: list[str], **extra_env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "jobs/tokenize_audioset.py", *args], cwd=REPO,
                          env=job_env(cluster, **extra_env), capture_output=True, text=True,
                          timeout=JOB_TIMEOUT_S, check=False)


def write_clips(folder: Path, count: int, seconds: float) -> set[str]:
    folder.mkdir(parents=True)
    names = {f"c{i:02d}.flac" for i in range(count)}
    for i, name in enumerate(sorted(names)):
        (folder / name).write_bytes(flac_bytes(seconds, i))
    return names


def settings(small_checkpoint) -> list[str]:
    return ["--checkpoint", str(small_checkpoint), "--semantic-vocab-size", "4096", "--max-batch-windows", "2",
            "--rows-per-file", "2", "--quiet"]


def error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and done.stdout == "", done.stderr[-3000:]
    return [line for line in done.stderr.splitlines() if line.strip()][-1]


def test_local_output_and_local_source_are_refused_on_more_than_one_node(cluster, small_checkpoint, tmp_path):
    import s3fs

    audio = tmp_path / "audio"
    write_clips(audio, 2, 1.0)
    remedy = ("is a local path, but this Ray cluster has 3 nodes and the run reads, encodes and writes on any of "
              "them: use s3:// (or another object store) on a multi-node cluster, or pass --shared-fs if it is on a "
              "filesystem every node mounts at the same path (NFS, Lustre, EFS)")
    with MotoServer() as endpoint:
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing")
        fs.mkdir("bucket")
        for path in audio.iterdir():
            fs.put_file(str(path), f"bucket/in/{path.name}")
        s3 = {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}
        out = tmp_path / "out"
        done = run_job(cluster, ["--source", "s3://bucket/in/", "--output", str(out), *settings(small_checkpoint)],
                       **s3)
        assert error_line(done) == f"error: --output {out} {remedy}"
        assert not [p for p in out.rglob("*") if p.is_file()], "something was written before the refusal"
        done = run_job(cluster, ["--source", str(audio), "--output", "s3://bucket/tokens", *settings(small_checkpoint)],
                       **s3)
        assert error_line(done) == f"error: --source {audio} {remedy}"
        fs.invalidate_cache()
        assert not fs.find("bucket/tokens"), "something was written before the refusal"


def test_default_cpu_sizing_finishes_on_nodes_of_1_2_and_2_cpus(cluster, small_checkpoint, tmp_path):
    """Sized from the cluster's 5 CPUs, the one encoder actor asked for 4 on a single node and waited
    forever; now it takes a whole 2-CPU node and leaves 3 CPUs to the decode and write tasks."""
    names = write_clips(tmp_path / "audio", 6, 1.0)
    out = tmp_path / "out"
    done = run_job(cluster, ["--source", str(tmp_path / "audio"), "--output", str(out), "--shared-fs",
                             *settings(small_checkpoint)])
    assert done.returncode == 0, done.stderr[-3000:]
    tokens, failures, run_record = read_output(out)
    assert_each_id_once(tokens, failures, names)
    assert not failures and run_record["counts"]["tokenized"] == len(names)
    assert not list((out / "_tmp").iterdir()), "the --shared-fs probe file is left behind"


def encoder_actor_node(cluster) -> str | None:
    """The node id of the live encoder actor (Ray Data's map worker), read from the GCS."""
    for actor in cluster.global_state.actor_table(None).values():
        if actor["State"] == "ALIVE" and "MapWorker" in actor["ActorClassName"]:
            return actor["Address"]["NodeID"]
    return None


def test_a_worker_node_killed_mid_run_leaves_every_id_once_after_the_rerun(cluster, small_checkpoint, tmp_path):
    """The node that holds the encoder actor dies while shards are being committed; whatever the run
    then does (Ray restarts the actor elsewhere and retries, or the job fails), the rerun completes
    the output: every input once, no input blamed, no committed shard rewritten. Last in this module:
    the cluster has one worker node less afterwards."""
    names = write_clips(tmp_path / "audio", 30, 2.0)
    out = tmp_path / "out"
    args = ["--source", str(tmp_path / "audio"), "--output", str(out), "--shared-fs", *settings(small_checkpoint)]
    job = subprocess.Popen([sys.executable, "jobs/tokenize_audioset.py", *args], cwd=REPO, env=job_env(cluster),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline and len(list((out / "tokens").glob("part-*.parquet"))) < 2:
            assert job.poll() is None, job.stdout.read()[-3000:]
            time.sleep(0.05)
        victims = [node for node in cluster.worker_nodes if node.node_id == encoder_actor_node(cluster)]
        assert victims and job.poll() is None, "kill the encoder's node mid-run"
        cluster.remove_node(victims[0], allow_graceful=False)
        first, _ = job.communicate(timeout=JOB_TIMEOUT_S)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "tokens").glob("part-*.parquet")}
    committed = sum(len(pads.dataset(out / "tokens" / name).to_table()) for name in before)
    rerun = run_job(cluster, args)
    assert rerun.returncode == 0, first[-3000:] + rerun.stderr[-3000:]
    tokens, failures, run_record = read_output(out, with_retryable=True)
    assert_each_id_once(tokens, failures, names)
    assert not failures, f"an input was blamed for a lost node: {failures[:3]}"
    after = {p.name: p.stat().st_mtime_ns for p in (out / "tokens").glob("part-*.parquet")}
    assert all(after[name] == mtime for name, mtime in before.items()), "a committed shard was rewritten"
    assert json.loads(rerun.stdout)["summary"]["tokenized"] == len(names)
    if committed < len(names):
        assert run_record["run"]["rows_this_run"] == len(names) - committed
    else:  # the first run finished after all (its encoder restarted elsewhere): the rerun had nothing to do
        assert "nothing left to do" in rerun.stderr and len(run_record["runs"]) == 1
