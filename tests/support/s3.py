"""S3 test helpers: a real moto S3 server on 127.0.0.1 and a fault-injecting proxy in front of it."""

from __future__ import annotations

import http.client
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class MotoServer:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)

    def __enter__(self) -> str:
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self._reset()  # moto keeps its buckets per process: each server starts empty
        return self.url

    def __exit__(self, *exc) -> None:
        self._reset()
        self.server.stop()

    def _reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=30).close()


ACCESS_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                 b"<Message>Access Denied</Message></Error>")


class FaultyProxy:
    """Forwards HTTP to `upstream`, answering a seeded `fault_rate` of requests with 503 SlowDown
    (or 403 AccessDenied with `status=403`), optionally only for some methods / object requests."""

    def __init__(self, upstream: str, fault_rate: float = 0.1, seed: int = 0, status: int = 503,
                 only_methods: tuple[str, ...] | None = None, only_objects: bool = False) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        payload = SLOW_DOWN if status == 503 else ACCESS_DENIED

        def eligible(method: str, path: str) -> bool:
            if only_methods and method not in only_methods:
                return False
            if only_objects:  # /bucket/key, not a bucket listing (/bucket?list-type=2...)
                bare = path.split("?", 1)[0].strip("/")
                return "/" in bare
            return True

        rng, lock, stats = random.Random(seed), threading.Lock(), {"requests": 0, "faults": 0}
        self.stats = stats

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with lock:
                    stats["requests"] += 1
                    fault = eligible(self.command, self.path) and rng.random() < fault_rate
                    stats["faults"] += fault
                if fault:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                self.send_response(reply.status, reply.reason)
                for key, value in reply.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                length = reply.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FaultyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
