"""The writer lease: one run at a time writes into an output folder.

`OUT/_lease.json` names its owner (run id, host, pid and the process's start time) and carries a
heartbeat: a counter (and, for people, a wall-clock time) the owner rewrites every `HEARTBEAT_S`.
It is created with an exclusive create (local: `O_EXCL`; S3: a conditional PUT, `If-None-Match:
*`), so of two runs starting together exactly one gets it; the other refuses in one line.

Whether a lease found in place belongs to a live run is never judged by comparing two machines'
clocks (a heartbeat stamped a day ahead by a skewed clock, or a run whose own clock is 300 s
ahead, would otherwise lock the output for a day or take over a live lease):
- written on this host: by the owner process's liveness (its pid exists and started when the
  lease says: a reused pid is not the owner);
- written on another host: by its heartbeat's progress as this run sees it. The observer
  watches the file for up to `STALE_S` of its own monotonic clock; a lease that changes is live
  (refused), one that does not change (a dead run, or a garbled file) is stale.
A stale lease is taken over: deleted only if it still is the one judged stale, then created
exclusively again. The owner re-reads the lease at every heartbeat and stops the run if another
run holds it, so even a lost race ends with one writer.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid

from ..errors import OutputError
from .folder import OutputFolder

log = logging.getLogger(__name__)

LEASE_FILE = "_lease.json"
HEARTBEAT_S = 20.0
STALE_S = 120.0


class WriterLease:
    def __init__(self, output: OutputFolder, *, heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S) -> None:
        self.output = output
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self.owner = {"run_id": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                      "started": _process_start(os.getpid())}
        self.beat = 0
        self.poll_s = min(heartbeat_s, stale_s) / 4  # how often an observer re-reads a lease it watches
        self.lost: str | None = None  # why the lease was lost, once it is
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- file operations ---
    def _path(self) -> str:
        return self.output.path(LEASE_FILE)

    def _record(self) -> bytes:
        self.beat += 1
        return json.dumps({**self.owner, "beat": self.beat, "heartbeat_at": time.time()}).encode()

    def _create_exclusive(self) -> bool:
        fs, path = self.output.fs, self._path()
        if self.output.is_local:
            fs.makedirs(self.output.root, exist_ok=True)
            try:
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(self._record())
            return True
        try:
            fs.pipe_file(path, self._record(), mode="create")
        except (FileExistsError, OSError) as error:
            if _is_precondition_failure(error):
                return False
            raise
        return True

    def _read_raw(self) -> bytes | None:
        try:
            return self.output.fs.cat_file(self._path())
        except FileNotFoundError:
            return None

    def read(self) -> dict | None:
        raw = self._read_raw()
        return None if raw is None else _parsed(raw)

    def _owner_alive(self, record: dict) -> bool | None:
        """On this host: whether the owner process lives. Elsewhere: unknown (None)."""
        pid = record.get("pid")
        if record.get("host") != self.owner["host"] or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            return None
        if not _pid_alive(pid):
            return False
        started = _process_start(pid)
        return record.get("started") is None or started is None or started == record["started"]

    def _heartbeat_moves(self, raw: bytes, record: dict) -> bool:
        """Watch the lease for up to `stale_s` (this process's monotonic clock): whether it changed."""
        log.warning("%s has a writer lease from host %s, pid %s: watching its heartbeat for up to %.0f s",
                    self.output.url, record.get("host"), record.get("pid"), self.stale_s)
        deadline = time.monotonic() + self.stale_s
        while time.monotonic() < deadline:
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
            if self._read_raw() != raw:
                return True
        return False

    # --- public API ---
    def acquire(self) -> None:
        """Take the lease or raise OutputError naming the run that holds it."""
        for _ in range(3):
            if self._create_exclusive():
                self._start_heartbeat()
                return
            raw = self._read_raw()
            if raw is None:
                continue  # released between our two calls: try again
            record = _parsed(raw)
            alive = self._owner_alive(record)
            how = "it is alive on this host"
            if alive is None:
                alive, how = self._heartbeat_moves(raw, record), f"its heartbeat moved within {self.stale_s:.0f} s"
                if alive and self._read_raw() is None:
                    continue  # it moved by being released
            if alive:
                raise OutputError(
                    f"another run is writing to {self.output.url} (host {record.get('host')}, pid {record.get('pid')}: "
                    f"{how}); wait for it to finish. A dead run's lease is taken over once its heartbeat has not "
                    f"moved for {self.stale_s:.0f} s")
            if self._read_raw() == raw:  # still the same stale lease: take it over
                log.warning("taking over the stale writer lease of %s (host %s, pid %s)",
                            self.output.url, record.get("host"), record.get("pid"))
                self._delete()
        raise OutputError(f"could not take the writer lease of {self.output.url}: other runs keep taking it")

    def check(self) -> None:
        """Raise OutputError if the lease was lost (another run took it over)."""
        if self.lost:
            raise OutputError(self.lost)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        record = self.read()
        if record is not None and record.get("run_id") == self.owner["run_id"]:
            self._delete()

    def __enter__(self) -> WriterLease:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # --- heartbeat ---
    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="writer-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                record = self.read()
                if record is None or record.get("run_id") != self.owner["run_id"]:
                    self.lost = (f"the writer lease of {self.output.url} was taken by another run "
                                 f"(host {record and record.get('host')}, pid {record and record.get('pid')}); "
                                 "stopping")
                    log.error(self.lost)
                    return
                self.output.publish(LEASE_FILE, self._record())
            except Exception as error:  # noqa: BLE001 - a missed heartbeat is not fatal; STALE_S covers several
                log.warning("writer lease heartbeat failed: %s", error)

    def _delete(self) -> None:
        try:
            self.output.fs.rm(self._path())
        except FileNotFoundError:
            pass


def _parsed(raw: bytes) -> dict:
    """The lease's record; torn or foreign content reads as a record of nobody (judged by whether it changes)."""
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    return record if isinstance(record, dict) else {"run_id": "?", "host": "?", "pid": -1}


def _process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, Linux's /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_precondition_failure(error: BaseException) -> bool:
    text = f"{type(error).__name__} {error}"
    return isinstance(error, FileExistsError) or "PreconditionFailed" in text or "412" in text
