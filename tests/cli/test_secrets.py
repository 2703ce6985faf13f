"""No credential lands in what a job writes or prints: a manifest of presigned URLs on the moto S3
server, tokenized with the QA stage, leaves no signature or access key anywhere in the output
folder (tokens/, failures/, retryable/, manifest.json, README.md, the QA report), on stdout or on
stderr; credentials given inside a URL option are refused in one line that does not repeat them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from pipeline.demo_audio import write_samples
from tests.support.outputs import read_output
from tests.support.s3 import S3_ENV, MotoServer

REPO = Path(__file__).resolve().parents[2]
JOB = "tokenize_audioset.py"
SYNTHETIC = ["--checkpoint", "synthetic:small", "--semantic-vocab-size", "4096", "--ray-num-cpus", "2"]
PRESIGN_KEY_ID, PRESIGN_SECRET = "AKIAPRESIGNED0TEST01", "presign/Secret+Key0123456789abcdefghijkl"


def test_a_presigned_url_manifest_leaves_no_signature_anywhere(tmp_path):
    import boto3
    from botocore.config import Config

    audio = tmp_path / "audio"
    write_samples(audio, include_bad=False)
    objects = {"speech.wav": (audio / "speechlike_16k_mono.wav").read_bytes(),
               "tone.flac": (audio / "long_40s_16k.flac").read_bytes(),
               "broken.wav": b"RIFF, but no audio in it"}
    out = tmp_path / "out"
    with MotoServer() as endpoint:
        clients = {version: boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=PRESIGN_KEY_ID,
                                         aws_secret_access_key=PRESIGN_SECRET, region_name="us-east-1",
                                         config=Config(signature_version=version)) for version in ("s3v4", "s3")}
        clients["s3v4"].create_bucket(Bucket="audio")
        for key, data in objects.items():
            clients["s3v4"].put_object(Bucket="audio", Key=key, Body=data)
        urls = [clients[version].generate_presigned_url("get_object", Params={"Bucket": "audio", "Key": key},
                                                        ExpiresIn=3600)  # SigV4 and SigV2 URLs
                for key, version in zip((*objects, "missing.wav"), ("s3v4", "s3", "s3v4", "s3"), strict=True)]
        manifest = tmp_path / "presigned.jsonl"  # no id column: ids come from the uris; they lie outside
        # the manifest's folder, so the URI rule is widened to the bucket on the command line
        manifest.write_text("".join(json.dumps({"uri": url}) + "\n" for url in urls))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RAY_ADDRESS"}
        env.update(S3_ENV, AWS_ENDPOINT_URL=endpoint)
        done = run_job(["--source", str(manifest), "--output", str(out), *SYNTHETIC, "--qa-samples", "2",
                        "--qa-ddim-steps", "2", "--allow-uri-prefix", f"{endpoint}/audio/"], env)
    assert done.returncode == 75, done.stderr[-3000:]  # missing.wav: retryable

    written_secrets = [value for url in urls for name, value in (pair.split("=", 1) for pair in urlsplit(url).query.split("&"))
                       if name in ("X-Amz-Signature", "X-Amz-Credential", "Signature", "AWSAccessKeyId")]
    assert len(written_secrets) == 2 * 4 and all(secret in manifest.read_text() for secret in written_secrets)
    secrets = {PRESIGN_KEY_ID, PRESIGN_SECRET, *written_secrets, *map(unquote, written_secrets)}

    tokens, failures, written = read_output(out, with_retryable=True)
    assert len({row["id"] for row in tokens}) == 2
    assert sorted(row["error_type"] for row in failures) == ["AudioDecodeError", "FileNotFoundError"]
    assert all(row["uri"].startswith(f"{endpoint}/audio/") and "Signature=REDACTED" in row["uri"]
               for row in tokens + failures)
    assert {row["id"] for row in tokens + failures} == {row["uri"] for row in tokens + failures}
    assert (out / "qa_report" / "index.html").is_file() and (out / "README.md").is_file()
    assert "REDACTED" in json.dumps(written["source"]) or written["source"]["url"] == str(manifest)

    for path in sorted(p for p in out.rglob("*") if p.is_file()):  # every file, parquet footers included
        data = path.read_bytes()
        leaked = [secret for secret in secrets if secret.encode() in data]
        assert not leaked, f"{path.relative_to(out)} holds {leaked}"
    for stream in (done.stdout, done.stderr):
        assert not [secret for secret in secrets if secret in stream], stream[-3000:]
    assert "Signature=REDACTED" in done.stderr  # the failure examples name the objects


def run_job(args: list[str], env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in (env or os.environ).items() if k not in ("RAY_ADDRESS", "PIPELINE_DEBUG")}
    return subprocess.run([sys.executable, f"jobs/{JOB}", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("option", ["--source", "--output", "--checkpoint"])
def test_credentials_inside_a_url_option_are_refused_without_repeating_them(tmp_path, option):
    given = "s3://AKIAINURL0EXAMPLE01:wJalr/K7MDENG/bPxRfiCYEXAMPLEKEY@bucket/prefix/"
    args = {"--source": str(tmp_path), "--output": str(tmp_path / "out"), option: given}
    done = run_job([arg for pair in args.items() for arg in pair], timeout=120)
    assert done.returncode == 1 and done.stdout == "", done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        f"error: {option} s3://REDACTED@bucket/prefix/: credentials do not go in a URL (the storage backends ignore "
        "them there, and their errors would quote them); give them in the environment (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY) or a profile (--aws-profile)"]
    for fragment in ("AKIAINURL0EXAMPLE01", "wJalr", "K7MDENG", "bPxRfiCYEXAMPLEKEY"):
        assert fragment not in done.stderr


def test_control_characters_from_data_are_escaped_on_stderr(tmp_path):
    """A file name holding terminal escapes (clear the screen, retitle the window, return to the
    line's start) is named escaped in the one-line error, before Ray starts."""
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "\x1b[2J\x1b]0;owned\x07clip\r.wav").write_bytes(b"RIFF")
    done = run_job(["--source", str(audio), "--output", str(tmp_path / "out")], timeout=120)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr[-2000:]
    assert not [ch for ch in done.stderr if ord(ch) < 32 and ch != "\n"], done.stderr
    assert f"({audio}/\\x1b[2J\\x1b]0;" in done.stderr  # the uri as the error quotes it (cut at 80 characters)
