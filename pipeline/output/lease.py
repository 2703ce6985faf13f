"""The writer lease: one run at a time writes into an output folder.

`OUT/_lease.json` names its owner (run id, host, pid) and carries a heartbeat that the owner
refreshes every `HEARTBEAT_S`. It is created with an exclusive create (local: `O_EXCL`; S3: a
conditional PUT, `If-None-Match: *`), so of two runs starting together exactly one gets it; the
other refuses in one line. A lease whose heartbeat is older than `STALE_S` (or whose owner process
on this host is gone) belongs to a dead run and is taken over: the stale file is deleted only if it
still is the one we judged stale, then created exclusively again. The owner re-reads the lease at
every heartbeat and stops the run if another run holds it, so even a lost race ends with one writer.
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
        self.owner = {"run_id": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid()}
        self.lost: str | None = None  # why the lease was lost, once it is
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- file operations ---
    def _path(self) -> str:
        return self.output.path(LEASE_FILE)

    def _record(self) -> bytes:
        return json.dumps({**self.owner, "heartbeat_at": time.time()}).encode()

    def _create_exclusive(self) -> bool:
        fs, root = self.output.filesystem()
        path = self._path()
        if self.output.is_local:
            fs.makedirs(root, exist_ok=True)
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

    def read(self) -> dict | None:
        fs, _ = self.output.filesystem()
        try:
            return json.loads(fs.cat_file(self._path()))
        except FileNotFoundError:
            return None
        except ValueError:  # torn or foreign content: treat as held until it goes stale by mtime
            return {"run_id": "?", "host": "?", "pid": -1, "heartbeat_at": self._mtime()}

    def _mtime(self) -> float:
        fs, _ = self.output.filesystem()
        try:
            modified = fs.modified(self._path())
            return modified.timestamp()
        except Exception:
            return time.time()

    def _is_stale(self, record: dict) -> bool:
        if time.time() - float(record.get("heartbeat_at", 0)) > self.stale_s:
            return True
        if record.get("host") == self.owner["host"] and isinstance(record.get("pid"), int) and record["pid"] > 0:
            return not _pid_alive(record["pid"])
        return False

    # --- public API ---
    def acquire(self) -> None:
        """Take the lease or raise OutputError naming the run that holds it."""
        for _ in range(3):
            if self._create_exclusive():
                self._start_heartbeat()
                return
            record = self.read()
            if record is None:
                continue  # released between our two calls: try again
            if not self._is_stale(record):
                age = time.time() - float(record.get("heartbeat_at", 0))
                raise OutputError(
                    f"another run is writing to {self.output.url} (host {record.get('host')}, pid {record.get('pid')}, "
                    f"heartbeat {age:.0f} s ago); wait for it to finish, or if it is dead, retry after "
                    f"{self.stale_s:.0f} s without a heartbeat"
                )
            if self.read() == record:  # still the same stale lease: take it over
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

    def __enter__(self) -> "WriterLease":
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
                                 f"(host {record and record.get('host')}, pid {record and record.get('pid')}); stopping")
                    log.error(self.lost)
                    return
                self.output.publish(LEASE_FILE, self._record())
            except Exception as error:  # a missed heartbeat is not fatal; STALE_S covers several
                log.warning("writer lease heartbeat failed: %s", error)

    def _delete(self) -> None:
        fs, _ = self.output.filesystem()
        try:
            fs.rm(self._path())
        except FileNotFoundError:
            pass


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
