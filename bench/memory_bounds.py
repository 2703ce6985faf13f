"""Peak memory of a tokenize run's decode tasks and encoder actor on inputs that would blow it if
memory followed their length: hours of silence, and a container that claims 1 s but holds 20 h.

    python bench/memory_bounds.py [--hours 6] [--lying-hours 20] [--cases silence,lying]

Each case is one run of the whole job (embedded Ray, 2 CPUs, one CPU encoder actor with the
`synthetic:small` weights, chunks of 30 windows = 307 s) on one input, in a Ray of its own. While
it runs, the bench polls every Ray worker process: a process is the decode task's while its title
names ReadDecode, the encoder's while it names EncoderActor. It prints, per role, the peak RSS
(VmHWM: the kernel's own high-water mark, exact) and the largest polled private (RssAnon) and
shared (RssShmem: pages of Ray's object store the process mapped) parts, and the peak of the
object store (polled). Figures are MiB. The encoder runs on CPU here, slower than the decode: the
worst case for buffering ahead of it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support's audio makers

ROLES = {"ReadDecode": "decode task", "EncoderActor": "encoder actor"}
MIB = 2**20


def silence_flac(path: Path, hours: float, rate: int = 16000) -> None:
    import numpy as np
    import soundfile as sf

    minute = np.zeros(rate * 60, np.float32)
    with sf.SoundFile(path, "w", rate, 1, format="FLAC") as handle:
        for _ in range(round(hours * 60)):
            handle.write(minute)


def lying_matroska(path: Path, hours: float) -> None:
    from tests.support.audio import silent_matroska

    path.write_bytes(silent_matroska(hours * 3600, claimed_s=1.0))


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


def _descends_from(pid: int, ancestor: int) -> bool:
    """Other runs' Ray workers may share the machine: only this process's own count."""
    while pid > 1:
        if pid == ancestor:
            return True
        pid = _parent(pid)
    return False


def _status(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssShmem", "RssFile"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


class WorkerWatch:
    """Polls /proc for Ray worker processes and keeps, per role, the peaks of each process."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.roles: dict[int, str] = {}
        self.peaks: dict[int, dict[str, int]] = {}
        self.store_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WorkerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import ray

        store_total = ray.cluster_resources().get("object_store_memory", 0)
        while not self._stop.is_set():
            self.poll()
            free = ray.available_resources().get("object_store_memory", store_total)
            self.store_peak = max(self.store_peak, int(store_total - free))
            time.sleep(self.interval_s)

    def poll(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    title = handle.read().decode(errors="replace")
                if not title.startswith("ray::") or (pid not in self.roles and not _descends_from(pid, os.getpid())):
                    continue
                role = next((name for key, name in ROLES.items() if key in title), None)
                if role:
                    self.roles.setdefault(pid, role)
                if pid in self.roles:
                    status = _status(pid)
                    peak = self.peaks.setdefault(pid, {})
                    for key, value in status.items():
                        peak[key] = max(peak.get(key, 0), value)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue

    def by_role(self) -> dict[str, dict[str, float]]:
        self.poll()  # VmHWM is the kernel's lifetime peak: the last read is exact
        out: dict[str, dict[str, float]] = {}
        for pid, role in self.roles.items():
            peak = self.peaks.get(pid, {})
            mine = out.setdefault(role, {"processes": 0, "peak_rss": 0, "private": 0, "object_store_pages": 0})
            mine["processes"] += 1
            mine["peak_rss"] = max(mine["peak_rss"], peak.get("VmHWM", 0) / MIB)
            mine["private"] = max(mine["private"], peak.get("RssAnon", 0) / MIB)
            mine["object_store_pages"] = max(mine["object_store_pages"], peak.get("RssShmem", 0) / MIB)
        return out


def run_case(name: str, audio: Path, work: Path, max_duration_s: float, max_batch_windows: int) -> dict:
    import ray

    from pipeline.cli.common import start_ray
    from pipeline.tokenize.config import TokenizeConfig
    from pipeline.tokenize.plan import plan_run
    from pipeline.tokenize.run import run_tokenize

    start_ray(num_cpus=2)
    try:
        config = TokenizeConfig(source=str(audio), output=str(work / f"out-{name}"), checkpoint="synthetic:small",
                                semantic_vocab_size=4096, num_gpus=0, max_duration_s=max_duration_s,
                                max_batch_windows=max_batch_windows, overwrite=True)
        started = time.perf_counter()
        with plan_run(config) as plan, WorkerWatch() as watch:  # as the job does: the plan, then the run
            run_record = run_tokenize(config, plan, progress=False)
        figures = watch.by_role()
        store_peak = watch.store_peak / MIB
    finally:
        ray.shutdown()
    counts = run_record["counts"]
    return {"case": name, "input_bytes": audio.stat().st_size, "wall_s": round(time.perf_counter() - started, 1),
            "token_rows": counts["token_rows"], "failed": counts["failed"],
            "failures_by_type": counts["failures_by_type"], "object_store_peak_mib": round(store_peak, 1),
            "roles": {role: {k: round(v, 1) for k, v in f.items()} for role, f in figures.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=6.0, help="hours of silence (16 kHz FLAC)")
    parser.add_argument("--lying-hours", type=float, default=20.0,
                        help="hours a Matroska holds while its header claims 1 s")
    parser.add_argument("--max-duration-s", type=float, default=6 * 3600.0)
    parser.add_argument("--max-batch-windows", type=int, default=16,
                        help="also the encoder's batch in rows, which sizes the buffer ahead of it")
    parser.add_argument("--cases", default="silence,lying")
    args = parser.parse_args()

    cases = args.cases.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = []
        if "silence" in cases:
            silence_flac(work / "silence.flac", args.hours)
            results.append(run_case(f"silence {args.hours:g} h", work / "silence.flac", work, args.max_duration_s,
                                    args.max_batch_windows))
        if "lying" in cases:
            lying_matroska(work / "lying.mka", args.lying_hours)
            results.append(run_case(f"claims 1 s, holds {args.lying_hours:g} h", work / "lying.mka", work,
                                    args.max_duration_s, args.max_batch_windows))
    print(f"# peak memory per role, MiB (CPU encoder, synthetic:small, chunks of 307 s, "
          f"--max-duration-s {args.max_duration_s:g}, --max-batch-windows {args.max_batch_windows})")
    for result in results:
        print(f"{result['case']}: input {result['input_bytes'] / MIB:.1f} MiB, {result['token_rows']} token rows, "
              f"{result['failed']} failed {result['failures_by_type'] or ''}, {result['wall_s']} s; "
              f"object store peak {result['object_store_peak_mib']:.0f}")
        for role, figures in sorted(result["roles"].items()):
            print(f"  {role:14s} peak RSS {figures['peak_rss']:7.0f}   private {figures['private']:7.0f}   "
                  f"object-store pages {figures['object_store_pages']:7.0f}   ({figures['processes']:.0f} process(es))")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
