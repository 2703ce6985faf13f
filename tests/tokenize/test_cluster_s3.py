"""The way users run it: `ray job submit` to a Ray head started with token auth by
infra/local/ray-local.sh, reading audio from and writing tokens to a real (moto) S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
import soundfile as sf

from pipeline.codecs.semanticodec import SemantiCodec
from pipeline.demo_audio import BAD_SAMPLES, GOOD_SAMPLES, write_samples
from tests.support.outputs import assert_each_id_once, tokens_by_id, validate_run_record
from tests.support.s3 import S3_ENV, MotoServer

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "local" / "ray-local.sh"
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def ray_head(tmp_path):
    """A Ray head with token auth; stopped by process id, and checked that nothing is left."""
    state = tmp_path / "ray-head"
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    port = free_port()
    subprocess.run([str(SCRIPT), "start", str(state), str(port), "--num-cpus=2"], check=True, env=env, timeout=180)
    leader = int((state / "ray.pid").read_text())
    try:
        yield {**env, "RAY_ADDRESS": f"http://127.0.0.1:{port}", "RAY_AUTH_MODE": "token",
               "RAY_AUTH_TOKEN_PATH": str(state / "auth_token")}
    finally:
        subprocess.run([str(SCRIPT), "stop", str(state)], check=True, env=env, timeout=120)
        left = subprocess.run(["ps", "-o", "pid=,stat=", "-s", str(leader)], capture_output=True, text=True).stdout
        assert not [line for line in left.splitlines() if not line.split()[1].startswith("Z")], left


def test_ray_job_submit_reads_and_writes_s3(ray_head, small_checkpoint, tmp_path):
    import s3fs

    samples = tmp_path / "samples"
    write_samples(samples)  # good files and the four broken ones
    with MotoServer() as endpoint:
        env = {**ray_head, **S3_ENV}
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing")
        fs.mkdir("audio")
        fs.mkdir("corpus")
        for path in samples.iterdir():
            fs.put_file(str(path), f"audio/in/{path.name}")
        runtime_env = {"env_vars": {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}, "excludes": [".venv", ".git"]}
        job = [
            "ray", "job", "submit", "--working-dir", str(REPO), "--runtime-env-json", json.dumps(runtime_env), "--",
            "python", "jobs/tokenize_audioset.py", "--source", "s3://audio/in/", "--output", "s3://corpus/run1",
            "--checkpoint", str(small_checkpoint), "--semantic-vocab-size", "4096", "--quiet", "--rows-per-file", "3",
        ]
        for _ in range(30):  # the head's job agent may register a little after its dashboard answers
            result = subprocess.run(job, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
            if "No available agent to submit job" not in result.stderr:
                break
            time.sleep(2)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        assert "Job 'raysubmit_" in result.stdout + result.stderr and '"tokenized": 7' in result.stdout
        assert "4 inputs failed; see s3://corpus/run1/failures/" in result.stdout
        files = fs.find("corpus/run1/tokens")
        assert files and all(f.rsplit("/", 1)[1].startswith("part-") for f in files)
        tokens = pads.dataset(files, filesystem=fs, format="parquet").to_table().to_pylist()
        failed = pads.dataset(fs.find("corpus/run1/failures"), filesystem=fs, format="parquet").to_table().to_pylist()
        run_record = json.loads(fs.cat_file("corpus/run1/manifest.json"))
    validate_run_record(run_record)
    assert_each_id_once(tokens, failed, set(GOOD_SAMPLES) | set(BAD_SAMPLES))
    assert all(r["uri"].startswith("s3://audio/in/") for r in tokens)
    codec = SemantiCodec.from_pretrained(str(small_checkpoint), token_rate=100, semantic_vocab_size=4096)
    got = tokens_by_id(tokens)
    for name in ("speechlike_16k_mono.wav", "music_44k1_stereo.flac", "noise_22k_vorbis.ogg", "long_40s_16k.flac"):
        data, rate = sf.read(samples / name, dtype="float32", always_2d=True)
        np.testing.assert_array_equal(got[name], codec.encode([data.T], rate)[0], err_msg=name)
