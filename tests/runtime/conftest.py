"""Generic fixtures for the runtime tests: running Lua snippets in the sandbox with small
limits, local HTTP servers on 127.0.0.1, SQLite files, and instances built directly."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runtime.execution import run_spec
from runtime.limits import platform_limits
from runtime.stores import MemoryStore

ALL_PERMISSIONS = [
    "device.http", "device.sql.read", "device.sql.write", "integration.cache",
    "integration.containers", "tenant.cache", "tenant.sql", "log", "callback",
]


def small_limits(**changes):
    """Limits small enough to keep the suite fast, generous enough for ordinary code."""
    base = platform_limits().with_(timeout_ms=5000, memory_mb=16, instructions=2_000_000)
    return base.with_(**changes)


def make_manifest(*, permissions=None, resources=None, containers=None, handlers=None, **extra) -> dict:
    return {
        "name": "sandbox-test",
        "permissions": ALL_PERMISSIONS if permissions is None else list(permissions),
        "resources": resources or {},
        "dataContainerSchemas": containers
        if containers is not None
        else {"orders": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}},
        "handlers": handlers or {"h": {"type": "timer", "file": "main.lua", "function": "h", "schedule": {"every": "1m"}}},
        **extra,
    }


@pytest.fixture
def run_code():
    """``run_code(lua_source, **options)`` → RunResult of handler ``h`` in main.lua.

    Options: permissions, resources, containers, devices, store, input, config, limits,
    files (extra bundle files), handlers."""

    def run(source: str, *, permissions=None, resources=None, containers=None, devices=None, store=None,
            input=None, config=None, limits=None, files=None, handlers=None, instance_info=None):
        manifest = make_manifest(permissions=permissions, resources=resources, containers=containers,
                                 handlers=handlers)
        return run_spec(
            manifest=manifest,
            files={"main.lua": source, **(files or {})},
            handler="h",
            input={} if input is None else input,
            config=config or {},
            instance_info=instance_info or {"id": 1, "name": "test"},
            store=store if store is not None else MemoryStore(),
            devices=devices or {},
            limits=limits or small_limits(),
        )

    return run


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that gave up (timeouts under test) is expected


class _Server:
    """A tiny HTTP server on 127.0.0.1 recording what it receives."""

    def __init__(self, routes):
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                record = {"method": self.command, "path": self.path, "headers": dict(self.headers),
                          "body": body.decode("utf-8", "replace")}
                server.requests.append(record)
                route = routes.get(self.path.split("?")[0])
                if route is None:
                    status, headers, payload = 200, {"Content-Type": "application/json"}, json.dumps(record).encode()
                else:
                    status, headers, payload = route(record)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def other_origin():
    """A second server: the origin a malicious redirect points at. It must see nothing."""
    server = _Server({})
    yield server
    server.close()


@pytest.fixture
def device_server(other_origin):
    """The bound device: echoes requests as JSON at any path, plus a few special routes."""

    def redirect(record):
        return 302, {"Location": f"{other_origin.url}/steal"}, b""

    def big(record):
        return 200, {"Content-Type": "text/plain"}, b"x" * 200_000

    def slow(record):
        time.sleep(1.5)
        return 200, {"Content-Type": "text/plain"}, b"late"

    def text(record):
        return 201, {"Content-Type": "text/plain", "X-Thing": "1"}, "héllo".encode()

    server = _Server({"/redirect": redirect, "/big": big, "/slow": slow, "/text": text})
    yield server
    server.close()


@pytest.fixture
def sqlite_file(tmp_path):
    """A SQLite database file with an ``orders`` table of three rows."""
    path = tmp_path / "erp.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, state TEXT, total REAL);"
        "INSERT INTO orders VALUES (1, 'open', 9.5), (2, 'closed', 3.0), (3, 'open', 12.25);"
    )
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def tenant_dir(settings, tmp_path):
    settings.JUNCTION_RUNTIME_TENANT_DIR = tmp_path / "tenants"
    return settings.JUNCTION_RUNTIME_TENANT_DIR
