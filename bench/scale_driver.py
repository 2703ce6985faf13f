"""The tokenize driver at scale: peak RSS, planning time, time to first commit and resume start-up for
manifests of 10k to 1M inputs, each run the production way (`semanticodec-tokenize` in a process of its own).

    python bench/scale_driver.py [--sizes 10000,100000] [--real-every 50] [--resume-left 1000]
    python bench/scale_driver.py --sizes 1000000            # the largest size: minutes
    python bench/scale_driver.py --sizes 10000 --s3-resume-keys 1740000   # resume start-up on moto's S3

Each size N is a manifest (CSV) of N rows; one row in `--real-every` names a real 1 s clip (so the encoder
encodes), the others name files that do not exist (`--missing-inputs fail`: each is a final failure row).
Weights: `synthetic:small` on one CPU encoder actor, embedded Ray with 2 CPUs.

- fresh run: the job on an empty output, interrupted (SIGINT, as Ctrl-C) a few seconds after its first
  commit (`--complete` lets it finish). Printed: planning (process start to the plan's end: settings,
  listing, output keys), Ray up, the moment the driver hands the work to Ray Data, time to the first
  shard committed (from process start, and from that moment), and the driver's peak RSS (the kernel's
  high-water mark, VmHWM).
- resume: the output is given N - `--resume-left` committed failure rows (written as the pipeline writes
  them: 256 rows per shard, keys in the footers), then the same command runs again: start-up is process
  start to the plan's end, and first commit as above.
- `--s3-resume-keys K`: the resume plan alone, in this process, onto an output on moto's S3 server (its own
  process) holding K committed token keys (256 per shard) with a manifest of K + 1,000 rows.

Growth per input is (RSS at the largest size - RSS at the smallest) / (difference in inputs); the
extrapolation to 20 M inputs is linear from there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MIB = 2**20
MARK = "SCALE_DRIVER"
SHARD_ROWS = 256


# --- the driver process (`--driver-only`): the job, with timing marks and its peak RSS on exit ---

def _mark(event: str) -> None:
    print(f"{MARK} {event} {time.time():.3f}", file=sys.stderr, flush=True)


def _timed(module, name: str, event: str) -> None:
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        _mark(f"{event}-start")
        try:
            return original(*args, **kwargs)
        finally:
            _mark(f"{event}-end")

    setattr(module, name, wrapper)


def driver_main(argv: list[str]) -> int:
    import atexit

    def peak() -> None:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        print(f"{MARK} peak {json.dumps({k: int(status[k].split()[0]) * 1024 for k in ('VmHWM', 'VmRSS')})}",
              file=sys.stderr, flush=True)

    atexit.register(peak)
    from pipeline.cli import common
    from pipeline.tokenize import plan, run

    _timed(plan, "plan_run", "plan")
    _timed(common, "start_ray", "ray")
    _timed(run, "_consume", "consume")  # the driver hands the work to Ray Data
    from pipeline.cli.tokenize import tokenize_main

    return tokenize_main(argv)


# --- inputs and outputs -------------------------------------------------------------------------

def write_input_manifest(folder: Path, rows: int, real_every: int) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import soundfile as sf

    clip = folder / "real.flac"
    t = np.arange(16000) / 16000
    sf.write(clip, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    numbers = np.arange(rows)
    ids = pa.array([f"clip-{i:08d}" for i in numbers])
    uris = pa.array(["real.flac" if real_every and i % real_every == 0 else f"missing/{i:08d}.flac" for i in numbers])
    path = folder / f"manifest-{rows}.csv"
    pacsv.write_csv(pa.table({"id": ids, "uri": uris}), path)
    return path


def commit_failures(output: str, ids: list[str], storage_options: dict | None = None) -> None:
    """The output state of a run that recorded `ids` as final failures (as `write_records` commits them)."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.output.folder import FAILURES_DIR, OutputFolder, failures_table
    from pipeline.output.shards import environment_versions

    folder = OutputFolder(output, storage_options)
    versions = environment_versions()

    def shard(start: int) -> None:
        rows = [{"id": i, "uri": f"missing/{i}.flac", "stage": "read", "error_type": "FileNotFoundError",
                 "message": "No such file", **versions} for i in ids[start:start + SHARD_ROWS]]
        folder.write_shard(FAILURES_DIR, failures_table(rows))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(shard, range(0, len(ids), SHARD_ROWS)))


# --- one run of the job, watched ------------------------------------------------------------------

class Watch:
    """The job's process: its stderr lines with their arrival times, and the first committed shard."""

    def __init__(self, argv: list[str], output: Path, interrupt_after_commit_s: float | None) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.started = time.time()
        self.process = subprocess.Popen([sys.executable, __file__, "--driver-only", *argv], stderr=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, text=True, env=env,
                                        start_new_session=True,  # its Ray's signals stay in its own group
                                        # Ctrl-C's default action even when this bench runs in the background
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.output, self.interrupt_after = output, interrupt_after_commit_s
        self.lines: list[tuple[float, str]] = []
        self.first_commit: float | None = None
        self.existing = self._shards()  # a resumed output's shards: the first commit is a new one
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append((time.time(), line.rstrip("\n")))

    def _shards(self) -> set[str]:
        names = set()
        for kind in ("tokens", "failures", "retryable"):
            with contextlib.suppress(FileNotFoundError), os.scandir(self.output / kind) as entries:
                names.update(f"{kind}/{e.name}" for e in entries if e.name.startswith("part-"))
        return names

    def _committed(self) -> bool:
        return bool(self._shards() - self.existing)

    def wait(self, timeout_s: float) -> dict:
        interrupted = False
        while self.process.poll() is None and time.time() - self.started < timeout_s:
            if self.first_commit is None and self._committed():
                self.first_commit = time.time()
            if (self.first_commit is not None and self.interrupt_after is not None and not interrupted
                    and time.time() - self.first_commit >= self.interrupt_after):
                self.process.send_signal(signal.SIGINT)
                interrupted = True
            time.sleep(0.05)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            interrupted = True
        self.process.wait()
        self._reader.join()
        return self.figures(interrupted)

    def marks(self) -> dict[str, float]:
        found = {}
        for _, line in self.lines:
            if line.startswith(MARK) and not line.startswith(f"{MARK} peak"):
                _, event, at = line.split()
                found.setdefault(event, float(at))
        return found

    def figures(self, interrupted: bool) -> dict:
        marks = self.marks()
        peak = next((json.loads(line.split(" ", 2)[2]) for _, line in self.lines if line.startswith(f"{MARK} peak")),
                    {})
        handed = marks.get("consume-start")
        last = next((line for _, line in reversed(self.lines) if line and not line.startswith(MARK)), "")
        def since(at):
            return round(at - self.started, 1) if at else None

        return {
            "exit": self.process.returncode, "interrupted": interrupted,
            "plan_s": since(marks.get("plan-end")), "ray_started_s": since(marks.get("ray-end")),
            "work_handed_s": since(handed), "first_commit_s": since(self.first_commit),
            "first_commit_after_handing_s": round(self.first_commit - handed, 1) if self.first_commit and handed
            else None,
            "peak_rss_mib": round(peak.get("VmHWM", 0) / MIB), "last_line": last[:160],
        }


def job_args(manifest: Path, output: Path) -> list[str]:
    return ["--source", str(manifest), "--output", str(output), "--checkpoint", "synthetic:small",
            "--semantic-vocab-size", "4096", "--num-gpus", "0", "--missing-inputs", "fail", "--ray-num-cpus", "2",
            "--max-batch-windows", "8", "--quiet"]


def bench_size(work: Path, rows: int, args) -> dict:
    folder = work / f"n{rows}"
    folder.mkdir()
    started = time.time()
    manifest = write_input_manifest(folder, rows, args.real_every)
    made_s = time.time() - started
    fresh = Watch(job_args(manifest, folder / "out"), folder / "out",
                  None if args.complete else args.after_commit_s).wait(args.timeout_s)
    resumed_out = folder / "resumed"
    ids = [f"clip-{i:08d}" for i in range(rows - args.resume_left)]
    started = time.time()
    commit_failures(str(resumed_out), ids)
    seeded_s = time.time() - started
    resume = Watch(job_args(manifest, resumed_out), resumed_out, args.after_commit_s).wait(args.timeout_s)
    return {"inputs": rows, "manifest_s": round(made_s, 1), "fresh": fresh,
            "resume": {"committed": len(ids), "seeded_s": round(seeded_s, 1), **resume}}


# --- resume start-up on S3 ------------------------------------------------------------------------

def s3_token_shards(client, bucket: str, prefix: str, ids: list[str], provenance: dict) -> None:
    """Token shards as the pipeline writes them (keys in the footer), one token pair per row: a full-size
    corpus would not fit in moto's memory, and resume reads only the footers."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from pipeline.output.folder import TOKENS_DIR, OutputFolder, tokens_table

    def put(start: int) -> None:
        rows = [{"id": i, "uri": "s3://a/b.flac", "chunk_index": 0, "num_chunks": 1, "chunk_start_s": 0.0,
                 "duration_s": 10.0, "source_sample_rate": 48000, "source_channels": 2, "num_frames": 1,
                 "semantic": np.zeros(1, np.uint16), "acoustic": np.zeros(1, np.uint16), "labels": ["/m/09x0r"],
                 "human_labels": None} for i in ids[start:start + SHARD_ROWS]]
        folder = OutputFolder(f"memory://{prefix}")  # made by the pipeline's own writer, then PUT to moto
        path = folder.write_shard(TOKENS_DIR, tokens_table(rows), provenance=provenance)
        import fsspec

        data = fsspec.filesystem("memory").cat_file(path)
        fsspec.filesystem("memory").rm_file(path)
        client.put_object(Bucket=bucket, Key=f"{prefix}/{TOKENS_DIR}/{path.rsplit('/', 1)[1]}", Body=data)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(0, len(ids), SHARD_ROWS)))


PROVENANCE = {"codec": "semanticodec", "variant": "semanticodec-r100-v4096", "token_rate": 100,
              "semantic_vocab_size": 4096, "acoustic_vocab_size": 8192, "synthetic_weights": True, "dtype": "float32",
              "files": {}}


def weights_provenance() -> dict:
    """PROVENANCE with the hashes of synthetic:small's encoder files (a resume checks them)."""
    from pipeline.codecs.semanticodec.checkpoint import encoder_file_hashes
    from pipeline.codecs.semanticodec.synthetic import resolve_checkpoint_location

    location = resolve_checkpoint_location("synthetic:small", 100, 4096, with_decoder=False)
    hashes = encoder_file_hashes(location, 100, 4096)
    return {**PROVENANCE, "files": {name: {"sha256": sha} for name, sha in hashes.items()}}


def bench_s3_resume(work: Path, keys: int) -> dict:
    import boto3

    from pipeline.codecs.semanticodec.variants import SemantiCodecVariant
    from pipeline.output.folder import OutputFolder
    from pipeline.output.identity import run_fingerprint
    from pipeline.output.schema import TOKENS_SCHEMA_VERSION
    from pipeline.tokenize.config import TokenizeConfig
    from pipeline.tokenize.plan import plan_run
    from tests.support.s3 import S3_ENV

    os.environ.update(S3_ENV)
    manifest = write_input_manifest(work, keys + 1000, 0)
    from bench.resume_startup import moto_process  # moto's S3 server in a process of its own

    with moto_process() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        started = time.time()
        s3_token_shards(client, "bench", "run", [f"clip-{i:08d}" for i in range(keys)], weights_provenance())
        seeded_s = time.time() - started
        config = TokenizeConfig(source=str(manifest), output="s3://bench/run", checkpoint="synthetic:small",
                                semantic_vocab_size=4096, num_gpus=0, missing_inputs="fail",
                                s3_endpoint_url=endpoint)
        OutputFolder(config.output, config.storage_options()).check_fingerprint(run_fingerprint(  # as its run did
            variant=SemantiCodecVariant(config.token_rate, config.semantic_vocab_size).name, dtype=config.dtype,
            chunk_windows=config.chunk_windows, tokens_schema_version=TOKENS_SCHEMA_VERSION))
        plans = []
        for _ in ("no key index (a killed run's output): every footer is read", "the key index a run leaves"):
            started = time.time()
            with plan_run(config) as plan:
                plans.append(round(time.time() - started, 1))
                to_read = len(plan.units)
    return {"committed_keys": keys, "shards": -(-keys // SHARD_ROWS), "seeded_s": round(seeded_s, 1),
            "plan_s": plans[1], "plan_without_index_s": plans[0], "to_read": to_read}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--driver-only":
        sys.exit(driver_main(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated input counts")
    parser.add_argument("--real-every", type=int, default=50, help="one row in N names a real clip (0: none)")
    parser.add_argument("--resume-left", type=int, default=1000, help="inputs left to do by the resumed run")
    parser.add_argument("--after-commit-s", type=float, default=5.0, help="interrupt this long after the first commit")
    parser.add_argument("--complete", action="store_true", help="let the fresh runs finish")
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    parser.add_argument("--s3-resume-keys", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        results = [bench_size(Path(tmp), int(n), args) for n in args.sizes.split(",") if n]
        s3 = bench_s3_resume(Path(tmp), args.s3_resume_keys) if args.s3_resume_keys else None
    load = os.getloadavg()
    print(f"# {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end; "
          "embedded Ray with 2 CPUs, synthetic:small, one CPU encoder actor; times in s from process start")
    print("inputs   plan   ray up  handed  1st commit (after handing)  peak RSS MiB | resume: committed  start-up  "
          "1st commit  peak RSS MiB")
    for r in results:
        f, s = r["fresh"], r["resume"]
        print(f"{r['inputs']:>8} {f['plan_s']!s:>6} {f['ray_started_s']!s:>7} {f['work_handed_s']!s:>7} "
              f"{f['first_commit_s']!s:>11} ({f['first_commit_after_handing_s']!s:>6})  {f['peak_rss_mib']:>12} | "
              f"{s['committed']:>17} {s['plan_s']!s:>9} {s['first_commit_s']!s:>11} {s['peak_rss_mib']:>13}")
    if len(results) > 1:
        low, high = results[0], results[-1]
        low_rss, high_rss = low["fresh"]["peak_rss_mib"], high["fresh"]["peak_rss_mib"]
        per_input = (high_rss - low_rss) * MIB / (high["inputs"] - low["inputs"])
        print(f"driver peak RSS growth: {per_input:.0f} bytes per input; at 20 M inputs: "
              f"{(low_rss * MIB + per_input * (20e6 - low['inputs'])) / 2**30:.1f} GiB; "
              f"{high['inputs']} vs {low['inputs']}: {high_rss / low_rss:.2f}x")
    if s3:
        print(f"resume start-up on moto S3: {s3['committed_keys']} committed keys in {s3['shards']} shards, "
              f"{s3['to_read']} inputs left: plan {s3['plan_s']} s with the key index a run leaves at its end, "
              f"{s3['plan_without_index_s']} s without it (a killed run's output: every footer is read)")
    print(json.dumps({"sizes": results, "s3_resume": s3}))


if __name__ == "__main__":
    main()
