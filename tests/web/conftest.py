"""A device for the customers' pages to test: a real HTTP server on 127.0.0.1 (the test
settings allow loopback devices: JUNCTION_DEVICE_ALLOW_PRIVATE, docs/devices.md)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class DeviceServer:
    """Answers every request with ``status``; records method, path and headers."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers)})
                self.send_response(server.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(b"{}")

            do_GET = do_HEAD = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def device_server():
    server = DeviceServer()
    yield server
    server.close()
