"""Processes a test started in a session of their own (a job and its embedded Ray), killed by id."""

from __future__ import annotations

import os
import signal
import subprocess
import time


def session_pids(session: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,stat=", "-s", str(session)], capture_output=True, text=True, check=False).stdout
    return [int(line.split()[0]) for line in out.splitlines() if not line.split()[1].startswith("Z")]


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL a job started with `start_new_session=True` and everything in its session."""
    os.killpg(process.pid, signal.SIGKILL)  # the job and its embedded Ray share its session
    process.wait(timeout=30)
    for _ in range(100):
        if not session_pids(process.pid):
            break
        time.sleep(0.2)
    for pid in session_pids(process.pid):  # anything the kill left behind, by process id
        os.kill(pid, signal.SIGKILL)
