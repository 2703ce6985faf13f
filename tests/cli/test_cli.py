"""The command line as a user meets it: `--help` generated from the config, and each user mistake
ending in one line on stderr with the right exit code, before Ray starts (no traceback, no Ray
session, a few seconds). The job scripts run in subprocesses, as a user runs them."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Literal, get_args

import pytest

from pipeline.cli.common import EXIT_FAULT, EXIT_INTERRUPTED, parse_config, run_cli
from pipeline.demo_audio import write_samples
from pipeline.errors import Interrupted, OutputError, SourceError
from pipeline.tokenize.config import TokenizeConfig

REPO = Path(__file__).resolve().parents[2]
JOB = "tokenize_audioset.py"
SYNTHETIC = ["--checkpoint", "synthetic:small", "--semantic-vocab-size", "4096", "--ray-num-cpus", "2"]
# Fails before Ray means a few seconds of imports (torch); the shared test machine is slow at times.
BEFORE_RAY_S = 15.0


def run_job(script: str, args: list[str], tmp_path: Path, env_overrides: dict | None = None, drop_aws=False):
    """(completed process, seconds, whether a Ray session folder appeared)."""
    ray_tmp = tmp_path / "ray_tmp"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PIPELINE_DEBUG")}
    if drop_aws:
        env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
                   AWS_EC2_METADATA_DISABLED="true")
    env.update(RAY_TMPDIR=str(ray_tmp), **(env_overrides or {}))
    started = time.monotonic()
    done = subprocess.run([sys.executable, f"jobs/{script}", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    return done, time.monotonic() - started, ray_tmp.exists()


def assert_one_line_error(done, seconds, ray_started, code: int, expected: str):
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == code, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert lines == [expected], done.stderr[-2000:]
    assert done.stdout == ""
    assert not ray_started, "Ray started before the mistake was reported"
    assert seconds < BEFORE_RAY_S, f"took {seconds:.1f} s"


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "audio"
    write_samples(folder, include_bad=False)
    return folder


def _normalized(text: str) -> str:
    return " ".join(text.split())


def help_entries(help_text: str) -> dict[str, str]:
    """--option → its help entry (continuation lines joined), from the option sections of --help."""
    entries: dict[str, str] = {}
    current = None
    for line in help_text.split("\nsettings:\n", 1)[1].splitlines():
        match = re.match(r"  (--[a-z0-9-]+)(.*)", line)
        if match:
            current = match.group(1)
            entries[current] = match.group(2)
        elif current and line.startswith("    "):
            entries[current] += " " + line
    return {option: _normalized(text) for option, text in entries.items()}


def test_help_shows_every_option_with_its_default_and_a_help_line(tmp_path):
    done, _, ray_started = run_job(JOB, ["--help"], tmp_path)
    assert done.returncode == 0 and not ray_started
    assert re.search(r"-- \\\n +python jobs/tokenize_audioset\.py", done.stdout)  # not `--      python`
    entries = help_entries(done.stdout)
    for f in dataclasses.fields(TokenizeConfig):
        option = "--" + f.name.replace("_", "-")
        entry = entries[option]
        assert _normalized(f.metadata["help"]) in entry, (option, entry)
        if f.metadata.get("required"):
            assert "(required)" in entry, option
        elif f.default is not None and f.default is not False:
            assert re.search(rf"\(default: [^)]*{re.escape(str(f.default))}", entry), (option, entry)
        else:
            assert "default" in entry, (option, entry)


def test_help_lists_choices_and_the_gpu_range_syntax(tmp_path):
    done, _, _ = run_job(JOB, ["--help"], tmp_path)
    assert "--token-rate {100,50,25}" in done.stdout and "--num-gpus N|MIN-MAX" in done.stdout


def test_generated_parser_types_flags_and_ranges():
    config = parse_config(TokenizeConfig, ["--output", "o", "--num-gpus", "1-8", "--overwrite",
                                           "--limit", "5", "--max-duration-s", "60"])
    assert config.num_gpus == (1, 8) and config.overwrite is True and config.limit == 5
    assert config.max_duration_s == 60.0 and config.token_rate == 100 and config.s3_anon is False
    assert parse_config(TokenizeConfig, ["--output", "o", "--num-gpus", "4"]).num_gpus == 4


def test_choices_come_from_the_fields_literal_types(capsys):
    """A field typed `Literal[...]` offers exactly its values, parsed to their type (optional or
    not); the config states them once."""
    from pipeline.cli.common import build_parser
    from pipeline.codecs.semanticodec.variants import TOKEN_RATES
    from pipeline.tokenize.config import option

    @dataclasses.dataclass
    class Settings:
        mode: Literal["fast", "exact"] = option("exact", "how")
        rate: Literal[25, 50] | None = option(None, "tokens per second")

    assert parse_config(Settings, ["--mode", "fast", "--rate", "50"]) == Settings(mode="fast", rate=50)
    assert parse_config(Settings, []) == Settings(mode="exact", rate=None)
    with pytest.raises(SystemExit) as exit_:
        parse_config(Settings, ["--rate", "100"])
    assert exit_.value.code == 2 and "argument --rate: invalid choice: 100 (choose from 25, 50)" in \
        capsys.readouterr().err
    actions = {action.dest: action for action in build_parser(TokenizeConfig, "")._actions}
    hints = typing.get_type_hints(TokenizeConfig)
    for name in ("token_rate", "semantic_vocab_size", "dtype", "dedupe", "resample_on", "missing_inputs"):
        assert actions[name].choices == get_args(hints[name]), name
    assert actions["token_rate"].choices == TOKEN_RATES


def test_nonexistent_source(tmp_path):
    nowhere = tmp_path / "nowhere"
    out = str(tmp_path / "out")
    done, seconds, ray_started = run_job(JOB, ["--source", str(nowhere), "--output", out], tmp_path)
    assert_one_line_error(done, seconds, ray_started, 1, f"error: source {nowhere} does not exist")


def test_output_path_is_a_file(tmp_path, audio):
    target = tmp_path / "a_file"
    target.write_text("not a folder")
    done, seconds, ray_started = run_job(JOB, ["--source", str(audio), "--output", str(target)], tmp_path)
    assert_one_line_error(done, seconds, ray_started, 1,
                          f"error: output {target} is a file; --output takes a folder (new or existing)")


def test_output_under_a_file(tmp_path, audio):
    (tmp_path / "a_file").write_text("not a folder")
    target = tmp_path / "a_file" / "out"
    done, seconds, ray_started = run_job(JOB, ["--source", str(audio), "--output", str(target)], tmp_path)
    assert_one_line_error(done, seconds, ray_started, 1,
                          f"error: cannot create output {target}: a parent of it is a file")


def test_forgotten_checkpoint_offline(tmp_path, audio):
    args = ["--source", str(audio), "--output", str(tmp_path / "out"),
            "--checkpoint", str(tmp_path / "no_weights")]
    done, seconds, ray_started = run_job(JOB, args, tmp_path, {"HF_HUB_OFFLINE": "1"})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert "checkpoint" in lines[0]
    assert str(tmp_path / "no_weights") in lines[0] and "unexpected" not in lines[0]
    assert_one_line_error(done, seconds, ray_started, 1, lines[0])


def test_manifest_without_a_uri_column(tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("name,label\nclip.wav,dog\n")
    out = str(tmp_path / "out")
    done, seconds, ray_started = run_job(JOB, ["--source", str(manifest), "--output", out], tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: manifest {manifest} has no audio path column"), lines
    assert_one_line_error(done, seconds, ray_started, 1, lines[0])


@pytest.mark.parametrize("args,message", [
    (["--token-rate", "7"], "argument --token-rate: invalid choice: 7 (choose from 100, 50, 25)"),
    (["--limit", "ten"], "argument --limit: invalid int value: 'ten'"),
    (["--num-gpus", "8-1"], "argument --num-gpus: expected MIN-MAX with 0 <= MIN <= MAX, got '8-1'"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
], ids=["choice", "int", "range", "unknown"])
def test_bad_flag_value_is_a_usage_error(tmp_path, args, message):
    done, seconds, ray_started = run_job(JOB, ["--output", str(tmp_path / "out"), *args], tmp_path)
    assert_one_line_error(done, seconds, ray_started, 2,
                          f"error: {message} (see python jobs/tokenize_audioset.py --help)")


def test_value_out_of_range(tmp_path, audio):
    args = ["--source", str(audio), "--output", str(tmp_path / "out"), "--limit", "0"]
    done, seconds, ray_started = run_job(JOB, args, tmp_path)
    assert_one_line_error(done, seconds, ray_started, 1, "error: --limit must be at least 1 (got 0)")


def test_s3_without_credentials(tmp_path, audio):
    from tests.support.s3 import MotoServer

    with MotoServer() as endpoint:
        done, seconds, ray_started = run_job(JOB, ["--source", str(audio), "--output", "s3://corpus/run1"],
                                             tmp_path, {"AWS_ENDPOINT_URL": endpoint}, drop_aws=True)
    assert_one_line_error(
        done, seconds, ray_started, 1,
        "error: no AWS credentials found for s3://corpus/run1: set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / --aws-profile (or run with an instance or pod role); "
        "--s3-anon reads public buckets")


def test_s3_output_bucket_missing(tmp_path, audio):
    from tests.support.s3 import S3_ENV, MotoServer

    with MotoServer() as endpoint:
        env = {"AWS_ENDPOINT_URL": endpoint, **S3_ENV}
        args = ["--source", str(audio), "--output", "s3://no-such-bucket/run1"]
        done, seconds, ray_started = run_job(JOB, args, tmp_path, env, drop_aws=True)
    assert_one_line_error(done, seconds, ray_started, 1,
                          "error: cannot write to output s3://no-such-bucket/run1: the bucket does not exist")


def test_spot_check_of_a_missing_output_fails(tmp_path):
    done, seconds, ray_started = run_job(
        "spot_check.py", ["--tokens", str(tmp_path / "nowhere"), "--report", str(tmp_path / "qa")], tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(tmp_path / "nowhere") in lines[0], lines
    assert not ray_started and seconds < BEFORE_RAY_S


# --- run_cli: every ending → an exit code and one line -----------------------------------------

def _ended_by(error: BaseException):
    def job():
        raise error
    return job


def test_run_cli_user_error_is_one_line(capsys):
    assert run_cli(_ended_by(SourceError("source x does not exist\n(second line)")), []) == 1
    assert capsys.readouterr().err == "error: source x does not exist (second line)\n"


def test_run_cli_interrupted_says_how_to_resume(capsys):
    assert run_cli(_ended_by(Interrupted(3)), []) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "interrupted: 3 shards committed; rerun the same command to resume\n"
    assert run_cli(_ended_by(KeyboardInterrupt()), []) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "interrupted; rerun the same command to resume\n"


def test_run_cli_unexpected_error_keeps_the_traceback_only_when_asked(capsys, monkeypatch):
    monkeypatch.delenv("PIPELINE_DEBUG", raising=False)
    assert run_cli(_ended_by(ZeroDivisionError("boom")), []) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "ZeroDivisionError: boom" in err
    assert run_cli(_ended_by(ZeroDivisionError("boom")), ["--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("PIPELINE_DEBUG", "1")
    assert run_cli(_ended_by(ZeroDivisionError("boom")), []) == 1
    assert "Traceback" in capsys.readouterr().err


def test_run_cli_unwraps_a_user_error_raised_in_a_ray_task(capsys):
    class RayTaskErrorLike(RuntimeError):  # what Ray raises on the driver: the remote traceback as text
        def __init__(self, cause):
            super().__init__("Traceback (most recent call last):\n  File ...\nSourceError: ...")
            self.cause = cause

    assert run_cli(_ended_by(RayTaskErrorLike(SourceError("bad source"))), []) == 1
    assert capsys.readouterr().err == "error: bad source\n"


def test_debug_shows_the_cause_chain_of_a_user_error_too(capsys):
    try:
        raise FileNotFoundError(2, "No such file or directory", "/data/clips")
    except FileNotFoundError as cause:
        error = SourceError("source /data/clips does not exist")
        error.__cause__ = cause
    assert run_cli(_ended_by(error), []) == 1
    assert capsys.readouterr().err == "error: source /data/clips does not exist\n"
    assert run_cli(_ended_by(error), ["--debug"]) == 1
    err = capsys.readouterr().err
    assert "FileNotFoundError" in err and "direct cause" in err and err.endswith(
        "error: source /data/clips does not exist\n")


def test_run_cli_a_fault_is_one_line_with_exit_70(capsys):
    from pipeline.faults import Fault

    fault = Fault.from_error("a read+decode task", OSError("cannot load library 'libsndfile.so.1'"))
    fault.args = (fault.args[0] + "\nFailed to apply UDF transform after 1/1 attempts (total backoff 0.0s).",)
    assert run_cli(_ended_by(fault), []) == EXIT_FAULT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {fault.line}; no input was recorded as failed")
    assert "Failed to apply" not in err


def test_a_user_error_raised_in_a_ray_task_loses_ray_datas_note(capsys):
    error = OutputError("cannot write /out/tokens/part-1.parquet: No space left on device")
    error.args = (error.args[0] + "\nFailed to apply UDF transform after 1/1 attempts (total backoff 0.0s).\n"
                  "To change retry attempts, backoff, or which errors are retried, configure ...",)
    assert run_cli(_ended_by(error), []) == 1
    assert capsys.readouterr().err == "error: cannot write /out/tokens/part-1.parquet: No space left on device\n"


# --- a real run: stdout is the JSON summary alone, failures explained on stderr, Ctrl-C ----------

def without_ray_address() -> dict:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def run_ray_job(args: list[str]):
    return subprocess.run([sys.executable, f"jobs/{JOB}", *args], cwd=REPO, env=without_ray_address(),
                          capture_output=True, text=True, timeout=600)


def test_run_prints_the_summary_on_stdout_and_failure_reasons_on_stderr(tmp_path):
    import json

    audio = tmp_path / "audio"
    write_samples(audio, include_bad=True)
    done = run_ray_job(["--source", str(audio), "--output", str(tmp_path / "out"), *SYNTHETIC])
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)["summary"]  # nothing else on stdout
    assert (summary["tokenized"], summary["failed"], summary["synthetic_weights"]) == (7, 4, True)
    assert "SYNTHETIC WEIGHTS" in done.stderr and "Traceback" not in done.stderr
    assert f"4 inputs failed; see {tmp_path / 'out'}/failures/\n" in done.stderr
    for error_type, count in summary["failures_by_type"].items():
        assert f"  {error_type}: {count}\n" in done.stderr
    for name in ("zero_bytes.wav", "not_audio.wav", "truncated.flac", "no_samples.wav"):
        assert f"    {name}: " in done.stderr, name
    # the warnings every run used to print, silenced at their source (Ray's `concurrency=`
    # deprecation: the actor pools use `compute=ActorPoolStrategy`; torch's read-only numpy warning:
    # the adapters hand torch writable arrays). Ray Data's own core_worker line about constructor
    # arguments in the object store remains: its actor pool emits it for every restartable actor.
    for noise in ("concurrency", "not writable", "DeprecationWarning", "Failed to convert column"):
        assert noise not in done.stderr, noise
    # the progress bar knows its total and says how fast audio goes through
    assert "tokenizing: 100%" in done.stderr and "/11 " in done.stderr and "audio-h/h" in done.stderr


def test_ctrl_c_says_how_many_shards_are_committed_and_how_to_resume(tmp_path):
    import signal

    audio = tmp_path / "audio"
    write_samples(audio, include_bad=False)
    for copy in range(1, 30):  # enough inputs to still be running when interrupted, on a loaded machine too
        for path in list(audio.glob("*.*")):
            if "_copy" not in path.stem:
                (audio / f"{path.stem}_copy{copy}{path.suffix}").write_bytes(path.read_bytes())
    process = subprocess.Popen(
        [sys.executable, f"jobs/{JOB}", "--source", str(audio), "--output", str(tmp_path / "out"), *SYNTHETIC,
         "--rows-per-file", "1"], cwd=REPO, env=without_ray_address(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        # Ctrl-C's default action, whatever this process inherited: a shell starts background commands
        # with SIGINT ignored, and Python then leaves it ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    tokens = tmp_path / "out" / "tokens"
    while time.monotonic() < deadline and not (tokens.is_dir() and any(tokens.glob("part-*.parquet"))):
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=360)  # Ray Data drains in-flight tasks on a busy 2-core CI box
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert process.returncode == EXIT_INTERRUPTED, stderr[-3000:]
    expected = r"interrupted: (\d+) shards committed; rerun the same command to resume"
    match = re.fullmatch(expected, lines[-1])
    assert match, lines[-5:]
    on_disk = [p for kind in ("tokens", "failures", "retryable") for p in (tmp_path / "out" / kind).glob("*.parquet")]
    assert int(match[1]) == len(on_disk) > 0, (lines[-1], on_disk)  # the shards committed, not those reported
    assert "Traceback" not in stderr and stdout == ""


def test_a_rerun_with_nothing_to_do_starts_no_ray_and_other_settings_are_refused_before_ray(tmp_path):
    import json

    audio = tmp_path / "audio"
    write_samples(audio, include_bad=False)
    out = tmp_path / "out"
    args = ["--source", str(audio), "--output", str(out), *SYNTHETIC, "--quiet"]
    done = run_ray_job(args)
    assert done.returncode == 0, done.stderr[-3000:]
    first = json.loads(done.stdout)["summary"]
    record = (out / "manifest.json").read_bytes()
    done, _, ray_started = run_job(JOB, args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not ray_started, "a rerun with nothing to do started Ray"
    assert "nothing left to do" in done.stderr
    again = json.loads(done.stdout)["summary"]
    assert {k: again[k] for k in ("inputs", "tokenized", "failed")} == {k: first[k] for k in ("inputs", "tokenized",
                                                                                            "failed")}
    assert again["audio_seconds_per_second"] == 0.0  # this invocation's, not the first run's
    assert (out / "manifest.json").read_bytes() == record, "a rerun with nothing to do rewrote the run record"
    done, seconds, ray_started = run_job(JOB, [*args, "--chunk-windows", "3"], tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and not ray_started, done.stderr[-3000:]
    assert re.fullmatch(rf"error: {re.escape(str(out))} was written with other settings \(chunk_windows: output has "
                        r"\d+, this run 3\); resuming would mix two corpora\. .*", lines[-1]), lines[-3:]
    assert seconds < BEFORE_RAY_S, f"took {seconds:.1f} s"


def test_transient_failures_exit_75_and_say_to_rerun(tmp_path):
    import json

    audio = tmp_path / "audio"
    write_samples(audio, include_bad=False)
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"id,uri\ngood,{audio / 'speechlike_16k_mono.wav'}\ngone,{audio / 'deleted.wav'}\n")
    out = tmp_path / "out"
    done = run_ray_job(["--source", str(manifest), "--output", str(out), *SYNTHETIC, "--quiet"])
    assert done.returncode == 75, done.stderr[-3000:]
    summary = json.loads(done.stdout)["summary"]
    assert (summary["tokenized"], summary["retryable"]) == (1, 1)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-2:] == [
        f"1 inputs hit transient errors (see {out}/retryable/); rerun the same command to retry them",
        "1 of them do not exist; if they will not appear (clips never downloaded), rerun with "
        "--missing-inputs fail to record them as failures"], lines[-5:]
    assert f"1 inputs hit transient errors; see {out}/retryable/" in lines  # then its type and reason
    assert any(line.startswith("    gone: ") for line in lines), lines[-6:]
    # kept retryable on purpose (a RayJob over clips that may yet appear): the same leftovers, exit 0
    done = run_ray_job(["--source", str(manifest), "--output", str(out), *SYNTHETIC, "--quiet",
                        "--retryable-exit-code", "0"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["summary"]["retryable"] == 1
    assert [line for line in done.stderr.splitlines() if line.strip()][-2:] == lines[-2:]
    # the user says the missing file will not appear: the rerun reads only it and records it as final
    done = run_ray_job(["--source", str(manifest), "--output", str(out), *SYNTHETIC, "--quiet",
                        "--missing-inputs", "fail"])
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)["summary"]
    assert (summary["tokenized"], summary["failed"], summary["retryable"]) == (1, 1, 0)
    assert summary["failures_by_type"] == {"FileNotFoundError": 1}


def test_forgotten_checkpoint_with_the_hub_unreachable(tmp_path, audio):
    """The default hf:// checkpoint, not cached, no network: one line at once, not minutes of retries."""
    args = ["--source", str(audio), "--output", str(tmp_path / "out")]
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "hf_cache")}
    done, seconds, ray_started = run_job(JOB, args, tmp_path, env)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("error: cannot reach the Hugging Face Hub (http://127.0.0.1:9: ")
    assert lines[0].endswith(
        ") to download hf://haoheliu/SemantiCodec, and its semanticodec-r100-v16384 files are not in the "
        "local cache: pass --checkpoint with a folder holding them (or synthetic:small for an offline demo); "
        "check HF_ENDPOINT")
    assert_one_line_error(done, seconds, ray_started, 1, lines[0])
