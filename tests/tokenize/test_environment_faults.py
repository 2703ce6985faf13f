"""A broken environment never writes off a corpus (issue 17): a library that cannot load, a missing
package or a bug of ours stops the run with one line and a non-zero exit, and no valid input is
recorded as failed; with a sound environment the corrupt file beside them is still its one failure
row; rows an older, broken install wrote can be retried (`--retry-failures`), and killing the retry
leaves every id counted once.

The faults are injected with a sitecustomize (tests/support/fault_injection) on the PYTHONPATH the
job and its Ray workers inherit: in the workers only, unless the driver's pre-flight is the point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.output.folder import FAILURES_DIR, OutputFolder, failures_table
from tests.support.audio import write_flac_clips
from tests.support.outputs import assert_each_id_once, read_output, read_rows
from tests.support.processes import kill_session

REPO = Path(__file__).resolve().parents[2]
INJECTION = REPO / "tests" / "support" / "fault_injection"
EXIT_FAULT = 70
CORRUPT = "corrupt.flac"
FAULTS = {
    "torchaudio's library fails to load": {"imports": {"torchaudio": (
        "OSError: Could not load this library: /venv/lib/python3.11/site-packages/torchaudio/lib/libtorchaudio.so: "
        "undefined symbol: torch_exception_get_what_without_backtrace")}},
    "libsndfile is missing": {"imports": {"soundfile": (
        "OSError: cannot load library 'libsndfile.so.1': libsndfile.so.1: cannot open shared object file: "
        "No such file or directory")}},
    "an ImportError inside the encoder": {"calls": {
        "pipeline.codecs.semanticodec.codec:SemantiCodec.encode_prepared":
            "ImportError: cannot import name '_lstm_cell' from 'torch._C'"}},
    "a TypeError inside a decode task": {"calls": {
        "pipeline.audio.load:_chunks": "TypeError: unsupported operand type(s) for +: 'int' and 'NoneType'"}},
}


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults") / "audio"
    names = write_flac_clips(folder, 4, seconds=1.5)
    (folder / CORRUPT).write_bytes((folder / names[0]).read_bytes()[:300])  # a header, then nothing
    return folder


def valid_names(audio: Path) -> set[str]:
    return {p.name for p in audio.iterdir()} - {CORRUPT}


def job(args: list[str], faults: dict | None = None, **popen):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PIPELINE_DEBUG")}
    if faults is not None:
        env.update(PYTHONPATH=str(INJECTION), PIPELINE_TEST_FAULTS=json.dumps(faults))
    return subprocess.Popen([sys.executable, "jobs/tokenize_audioset.py", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def tokenize(audio: Path, out: Path, *extra: str, faults: dict | None = None) -> subprocess.CompletedProcess:
    args = ["--source", str(audio), "--output", str(out), "--checkpoint", "synthetic:small", "--semantic-vocab-size",
            "4096", "--rows-per-file", "2", "--max-batch-windows", "2", "--ray-num-cpus", "2", "--quiet", *extra]
    process = job(args, faults)
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_stopped_in_one_line(done: subprocess.CompletedProcess, *words: str) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == EXIT_FAULT, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(errors) == 1 and done.stderr.rstrip().endswith(errors[0]), done.stderr[-3000:]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_worker_stops_the_run_and_writes_no_valid_input_off(audio, tmp_path, fault):
    out = tmp_path / "out"
    done = tokenize(audio, out, faults={"where": "workers", **FAULTS[fault]})
    injected = next(iter(next(iter(FAULTS[fault].values())).values()))
    line = assert_stopped_in_one_line(done, injected.split(": ", 1)[0], "likely cause")
    assert "no input was recorded as failed" in line
    failed = {row["id"] for row in read_rows(out / FAILURES_DIR)} | {row["id"] for row in read_rows(out / "retryable")}
    assert not failed & valid_names(audio), failed
    if fault == "libsndfile is missing":  # the same command, once the environment is sound: resumes
        done = tokenize(audio, out)
        assert done.returncode == 0, done.stderr[-3000:]
        tokens, failures, run_record = read_output(out)
        assert_each_id_once(tokens, failures, valid_names(audio) | {CORRUPT})
        assert [(row["id"], row["stage"]) for row in failures] == [(CORRUPT, "decode")]
        assert run_record["counts"]["tokenized"] == len(valid_names(audio))


def test_the_driver_refuses_a_broken_environment_before_ray_starts(audio, tmp_path):
    started = time.monotonic()
    done = tokenize(audio, tmp_path / "out", faults={"where": "everywhere", **FAULTS["libsndfile is missing"]})
    assert_stopped_in_one_line(done, "environment check of libsndfile", "cannot load library", "likely cause")
    assert not (tmp_path / "out" / "tokens").exists() and time.monotonic() - started < 60


def test_a_worker_that_dies_on_every_try_stops_the_run_after_its_retries(audio, tmp_path):
    """A decode that kills its process (a native crash) is retried a few times, not without end;
    then the run stops in one line and writes no input off."""
    out = tmp_path / "out"
    done = tokenize(audio, out, faults={"where": "workers", "calls": {"pipeline.audio.load:_chunks": "signal SIGSEGV"}})
    line = assert_stopped_in_one_line(done, "a worker process died on each try", "native crash")
    assert "no input was recorded as failed" in line
    assert not read_rows(out / FAILURES_DIR) and not read_rows(out / "retryable")


def test_a_full_disk_under_the_output_is_one_line_with_the_systems_words(audio, tmp_path):
    out = tmp_path / "out"
    done = tokenize(audio, out, faults={"where": "workers", "calls": {"os:fsync": "OSError: No space left on device"}})
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(errors) == 1 and done.stderr.rstrip().endswith(errors[0]), done.stderr[-3000:]
    assert errors[0].startswith(f"error: cannot write {out}/") and errors[0].endswith(": No space left on device")
    assert not list((out / "_tmp").iterdir())  # the failed publish left no temporary file


def broken_install_output(audio: Path, out: Path) -> None:
    """The output an install whose torchaudio could not load wrote before this issue: every valid
    clip a final failure row (no version columns), the corrupt one a genuine failure."""
    rows = [{"id": name, "uri": str(audio / name), "stage": "encode", "error_type": "OSError",
             "message": "Could not load this library: libtorchaudio.so: undefined symbol"} for name in valid_names(audio)]
    rows.append({"id": CORRUPT, "uri": str(audio / CORRUPT), "stage": "decode", "error_type": "AudioDecodeError",
                 "message": "soundfile cannot decode it"})
    for half in (rows[::2], rows[1::2]):
        OutputFolder(str(out)).write_shard(FAILURES_DIR, failures_table(half))


def counted_once(out: Path, ids: set[str]) -> None:
    keys = OutputFolder(str(out)).committed_keys()
    tokenized = {key for key, _ in keys.chunk_keys()}
    folders = [tokenized, set(keys.failed_ids().to_pylist()), set(keys.retryable)]
    assert set().union(*folders) == ids and sum(map(len, folders)) == len(ids), folders


def test_retry_failures_recovers_the_rows_of_a_broken_environment(tmp_path):
    audio = tmp_path / "audio"
    names = write_flac_clips(audio, 10, seconds=1.5)
    (audio / CORRUPT).write_bytes((audio / names[0]).read_bytes()[:300])
    out = tmp_path / "out"
    broken_install_output(audio, out)
    ids = valid_names(audio) | {CORRUPT}

    done = tokenize(audio, out)  # a plain rerun: every input is complete, nothing is retried
    assert done.returncode == 0 and json.loads(done.stdout)["summary"]["failed"] == len(ids), done.stderr[-2000:]

    retry = ["--retry-failures", "OSError", "--rows-per-file", "1"]
    args = ["--source", str(audio), "--output", str(out), "--checkpoint", "synthetic:small", "--semantic-vocab-size",
            "4096", "--max-batch-windows", "1", "--ray-num-cpus", "2", "--quiet", *retry]
    killed = job(args, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list((out / "tokens").glob("part-*.parquet"))) < 2:
        assert killed.poll() is None, killed.communicate()[1][-3000:]
        time.sleep(0.05)
    kill_session(killed)  # the retry and its embedded Ray, mid-run
    counted_once(out, ids)

    done = tokenize(audio, out, *retry)  # the same command again finishes the retry
    assert done.returncode == 0, done.stderr[-3000:]
    counted_once(out, ids)
    tokens, failures, run_record = read_output(out)
    assert_each_id_once(tokens, failures, ids)  # the files themselves, as any reader sees them
    assert [(row["id"], row["error_type"]) for row in failures] == [(CORRUPT, "AudioDecodeError")]
    assert run_record["counts"]["tokenized"] == len(valid_names(audio)) and run_record["counts"]["failed"] == 1
