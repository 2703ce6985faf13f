"""Canaries for trust-boundary tests: an HTTP server on 127.0.0.1 that records every request it
gets (a test asserts it got none), and a private local file whose bytes must never come back."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

from tests.support.audio import wav_bytes


class CanaryServer:
    """`with CanaryServer() as canary:` → `canary.url`, `canary.requests` (method, path) seen."""

    def __init__(self, body: bytes | None = None) -> None:
        requests: list[tuple[str, str]] = []
        payload = body if body is not None else wav_bytes(1.0)
        self.requests = requests

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self):
                requests.append((self.command, self.path))
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_HEAD = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_canary_file(folder: Path) -> Path:
    """A private recording (valid audio, so a read would tokenize it) outside any dataset."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "private_recording.wav"
    path.write_bytes(wav_bytes(1.3))
    return path


def write_canary_tar(folder: Path) -> Path:
    """A local tar holding `ok.wav`: what `tar://ok.wav::file:///...` would read."""
    import io
    import tarfile

    path = folder / "local.tar"
    payload = wav_bytes(1.1)
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("ok.wav")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


def hostile_uris(canary_file: Path, canary_tar: Path, server_url: str) -> dict[str, str]:
    """id → a URI a dataset must not be able to make the job read."""
    return {
        "abs_local": str(canary_file),
        "file_url": f"file://{canary_file}",
        "tar_member": f"tar://ok.wav::file://{canary_tar}",
        "http": f"{server_url}/canary.wav",
        "shadow": "/etc/shadow",
        "up_and_out": "../../" * 8 + str(canary_file).lstrip("/"),
        "cached_chain": f"simplecache::{server_url}/chained.wav",
    }
