"""ctx.device.http and ctx.device.sql against real local servers and databases."""
from __future__ import annotations

import socket
import sqlite3
import threading
import time
import uuid

import psycopg
import pytest
from django.db import connection

from marketplace.choices import ResourceKind
from marketplace.models import Device, Organization
from marketplace.validators import sqlite_device_folder
from runtime.device_sql import postgres_query
from runtime.devices import DeviceSpec
from runtime.stores import MemoryStore
from runtime.tenant_sql import tenant_sqlite_path

from ..conftest import requires_postgres
from .conftest import small_limits

HTTP = {"printer": {"kind": "http"}}
SQL = {"erp": {"kind": "sql"}}


def http_device(server, path="", **fields) -> dict:
    return {"printer": DeviceSpec(kind="http", base_url=server.url + path, **fields)}


# --- aliases -------------------------------------------------------------------------------

def test_an_undeclared_alias_is_refused(run_code, device_server):
    outcome = run_code('function h(ctx, input) return ctx.device.http("elsewhere", { path = "/" }) end',
                       resources=HTTP, devices=http_device(device_server))
    assert outcome.error.code == "invalid_alias"
    assert device_server.requests == []


def test_an_alias_of_the_wrong_kind_is_refused(run_code, sqlite_file):
    outcome = run_code('function h(ctx, input) return ctx.device.http("erp", {}) end', resources=SQL,
                       devices={"erp": DeviceSpec(kind="sql", dsn=f"sqlite:///{sqlite_file}")})
    assert outcome.error.code == "invalid_alias"


def test_an_unbound_alias_is_refused(run_code):
    outcome = run_code('function h(ctx, input) return ctx.device.sql("erp", "SELECT 1") end', resources=SQL)
    assert outcome.error.code == "unbound_alias"
    assert "erp" in outcome.error.message


# --- HTTP ----------------------------------------------------------------------------------

def test_http_get_with_query_and_headers(run_code, device_server):
    outcome = run_code(
        """function h(ctx, input)
          local r = ctx.device.http("printer", { path = "/api/status", query = { a = "1 2", b = true },
                                                headers = { ["X-Api-Key"] = ctx.config.key } })
          return { status = r.status, path = r.json.path, key = r.json.headers["X-Api-Key"],
                   ctype = r.headers["content-type"], method = r.json.method }
        end""",
        resources=HTTP, devices=http_device(device_server), config={"key": "k-1"},
    )
    assert outcome.result == {"status": 200, "path": "/api/status?a=1+2&b=true", "key": "k-1",
                              "ctype": "application/json", "method": "GET"}, outcome.error


def test_http_post_json_and_text_responses(run_code, device_server):
    outcome = run_code(
        """function h(ctx, input)
          local posted = ctx.device.http("printer", { method = "POST", path = "/orders", json = { id = 7 } })
          local text = ctx.device.http("printer", { path = "/text" })
          return { body = posted.json.body, ctype = posted.json.headers["Content-Type"],
                   status = text.status, text = text.body, json = text.json == nil, thing = text.headers["x-thing"] }
        end""",
        resources=HTTP, devices=http_device(device_server),
    )
    assert outcome.result == {"body": '{"id":7}', "ctype": "application/json", "status": 201, "text": "héllo",
                              "json": True, "thing": "1"}, outcome.error


def test_http_sends_the_devices_headers_and_credentials(run_code, device_server):
    devices = http_device(device_server, headers={"X-Site": "HQ"}, credentials={"token": "secret-token"})
    outcome = run_code(
        'function h(ctx, input) local r = ctx.device.http("printer", {}) return r.status end',
        resources=HTTP, devices=devices,
    )
    assert outcome.result == 200
    headers = device_server.requests[0]["headers"]
    assert headers["X-Site"] == "HQ" and headers["Authorization"] == "Bearer secret-token"


def test_http_paths_are_joined_under_the_base_path(run_code, device_server):
    outcome = run_code('function h(ctx, input) return ctx.device.http("printer", { path = "status" }).json.path end',
                       resources=HTTP, devices=http_device(device_server, "/api/v1/"))
    assert outcome.result == "/api/v1/status"


@pytest.mark.parametrize(
    "path",
    ["/../admin", "/a/%2e%2e/b", "http://evil.example/x", "//evil.example/x", "/a b", "/a\r\nHost: x", "/a#frag"],
)
def test_http_paths_cannot_leave_the_device(run_code, device_server, path):
    outcome = run_code(f"function h(ctx, input) return ctx.device.http('printer', {{ path = [[{path}]] }}) end",
                       resources=HTTP, devices=http_device(device_server, "/api"))
    assert outcome.error.code == "invalid_argument"
    assert device_server.requests == []


def test_http_redirects_to_another_origin_are_not_followed(run_code, device_server, other_origin):
    outcome = run_code(
        """function h(ctx, input)
          local r = ctx.device.http("printer", { path = "/redirect" })
          return { status = r.status, location = r.headers.location }
        end""",
        resources=HTTP, devices=http_device(device_server),
    )
    assert outcome.result == {"status": 302, "location": f"{other_origin.url}/steal"}
    assert other_origin.requests == []


def test_http_refuses_platform_headers(run_code, device_server):
    outcome = run_code('function h(ctx, input) return ctx.device.http("printer", { headers = { Host = "evil" } }) end',
                       resources=HTTP, devices=http_device(device_server))
    assert outcome.error.code == "invalid_argument"


def test_http_response_size_is_capped(run_code, device_server):
    outcome = run_code('function h(ctx, input) return ctx.device.http("printer", { path = "/big" }).status end',
                       resources=HTTP, devices=http_device(device_server),
                       limits=small_limits(http_response_bytes=100_000))
    assert outcome.error.code == "response_too_large"


def test_http_request_timeout_is_an_http_error(run_code, device_server):
    outcome = run_code(
        """function h(ctx, input)
          local ok, err = pcall(ctx.device.http, "printer", { path = "/slow", timeout = 200 })
          return err
        end""",
        resources=HTTP, devices=http_device(device_server),
    )
    assert outcome.result == "main.lua:2: http_error: GET /slow: timed out"


def test_time_inside_http_counts_against_the_run_deadline(run_code, device_server):
    outcome = run_code('function h(ctx, input) pcall(ctx.device.http, "printer", { path = "/slow" }) return 1 end',
                       resources=HTTP, devices=http_device(device_server), limits=small_limits(timeout_ms=300))
    assert outcome.error.code == "timeout"


def test_an_unreachable_device_is_an_http_error(run_code):
    outcome = run_code('function h(ctx, input) return ctx.device.http("printer", {}) end', resources=HTTP,
                       devices={"printer": DeviceSpec(kind="http", base_url="http://127.0.0.1:9/")})
    assert outcome.error.code == "http_error"


# --- HTTP: one deadline for the whole exchange -------------------------------------------

class DrippingDevice:
    """A device on a raw socket that sends ``head`` at once, then ``drip`` one byte every
    0.2 s, then ``tail``. ``outcome()`` says whether the client stayed until all was sent
    ("finished") or hung up before the device was done ("hung_up")."""

    def __init__(self, head: bytes, drip: bytes, tail: bytes = b"", scheme: str = "http"):
        self.head, self.drip, self.tail = head, drip, tail
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"{scheme}://127.0.0.1:{self.listener.getsockname()[1]}"
        self.result: list[str] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.listener.accept()
        with conn:
            request = conn.recv(4096)  # a TLS ClientHello, or the start of a request
            while self.url.startswith("http:") and b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            try:
                conn.sendall(self.head)
                for byte in self.drip:
                    time.sleep(0.2)
                    conn.sendall(bytes([byte]))
                conn.sendall(self.tail)
            except OSError:  # the client closed: the next send after that fails
                self.result.append("hung_up")
            else:
                self.result.append("finished")

    def outcome(self) -> str:
        self.thread.join(30)
        return self.result[0] if self.result else "still running"

    def close(self):
        self.listener.close()


# 20 bytes, 0.2 s apart: 4 s of dripping against runs of 1 s.
DRIP = b"X-Slow: " + b"a" * 12
DRIPS = {
    "status line and headers": (b"", b"HTTP/1.1 200 OK\r\n" + DRIP, b"\r\nContent-Length: 2\r\n\r\nok"),
    "body": (b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n", b"b" * 20, b""),
    "chunked body": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n", b"c" * 20, b"\r\n0\r\n\r\n"),
    # A TLS handshake record (ServerHello) that never completes.
    "TLS handshake": (b"", b"\x16\x03\x03\x00\x40" + b"\x02" * 15, b"", "https"),
}


@pytest.fixture(params=list(DRIPS))
def dripping_device(request):
    device = DrippingDevice(*DRIPS[request.param])
    yield device
    device.close()


def test_a_dripping_device_cannot_hold_a_run_past_its_deadline(run_code, dripping_device):
    outcome = run_code('function h(ctx, input) pcall(ctx.device.http, "printer", { path = "/" }) return "done" end',
                       resources=HTTP, devices={"printer": DeviceSpec(kind="http", base_url=dripping_device.url)},
                       limits=small_limits(timeout_ms=1000))

    assert outcome.error is not None and outcome.error.code == "timeout"
    assert dripping_device.outcome() == "hung_up"


def test_a_dripping_device_cannot_outlast_the_requests_own_timeout(run_code, dripping_device):
    outcome = run_code(
        """function h(ctx, input)
          local ok, err = pcall(ctx.device.http, "printer", { path = "/", timeout = 500 })
          return err
        end""",
        resources=HTTP, devices={"printer": DeviceSpec(kind="http", base_url=dripping_device.url)},
    )

    assert outcome.result == "main.lua:2: http_error: GET /: timed out", outcome.error
    assert dripping_device.outcome() == "hung_up"


def test_a_device_that_is_quick_enough_is_read_to_the_end(run_code):
    device = DrippingDevice(*DRIPS["chunked body"])
    outcome = run_code('function h(ctx, input) return ctx.device.http("printer", { path = "/" }).body end',
                       resources=HTTP, devices={"printer": DeviceSpec(kind="http", base_url=device.url)})
    device.close()

    assert outcome.result == "c" * 20, outcome.error


def test_an_unresolvable_host_is_an_http_error(run_code):
    outcome = run_code('function h(ctx, input) return ctx.device.http("printer", {}) end', resources=HTTP,
                       devices={"printer": DeviceSpec(kind="http", base_url="http://no-such-host.invalid/")})
    assert outcome.error.code == "http_error"


# --- text that is not valid Unicode ----------------------------------------------------------

@pytest.fixture
def odd_text_server():
    from .conftest import _Server

    server = _Server({
        "/surrogate": lambda r: (200, {"Content-Type": "application/json"}, b'{"name": "a\\ud800b", "\\udc00": [1]}'),
        "/latin1": lambda r: (200, {"Content-Type": "application/json"}, b'{"name": "caf\xe9"}'),
    })
    yield server
    server.close()


def test_a_lone_surrogate_in_a_json_response_becomes_a_replacement_character(run_code, odd_text_server):
    outcome = run_code(
        'function h(ctx, input) local r = ctx.device.http("printer", { path = "/surrogate" }) return r.json end',
        resources=HTTP, devices={"printer": DeviceSpec(kind="http", base_url=odd_text_server.url)},
    )
    assert outcome.result == {"name": "a\ufffdb", "\ufffd": [1]}, outcome.error


def test_invalid_utf8_in_a_response_becomes_a_replacement_character(run_code, odd_text_server):
    outcome = run_code(
        'function h(ctx, input) local r = ctx.device.http("printer", { path = "/latin1" }) return { r.body, r.json } end',
        resources=HTTP, devices={"printer": DeviceSpec(kind="http", base_url=odd_text_server.url)},
    )
    assert outcome.result == ['{"name": "caf\ufffd"}', {"name": "caf\ufffd"}], outcome.error


@pytest.mark.parametrize("expression", ["char(55296)", "CAST(x'636166e9' AS TEXT)"])
def test_sqlite_text_that_is_not_utf8_becomes_a_replacement_character(run_code, sqlite_file, expression):
    outcome = run_code(f'function h(ctx, input) return ctx.device.sql("erp", "SELECT {expression} AS s")[1].s end',
                       resources=SQL, devices=sqlite_device(sqlite_file))
    assert outcome.error is None and "\ufffd" in outcome.result


# --- SQL on SQLite -------------------------------------------------------------------------

def sqlite_device(path) -> dict:
    return {"erp": DeviceSpec(kind="sql", dsn=f"sqlite:///{path}")}


def test_sql_reads_rows_with_parameters(run_code, sqlite_file):
    outcome = run_code(
        'function h(ctx, input) return ctx.device.sql("erp", "SELECT id, state, total FROM orders WHERE state = ? ORDER BY id", { "open" }) end',
        resources=SQL, devices=sqlite_device(sqlite_file), permissions=["device.sql.read"],
    )
    assert outcome.result == [{"id": 1, "state": "open", "total": 9.5}, {"id": 3, "state": "open", "total": 12.25}]


def test_sql_is_read_only_without_the_write_permission(run_code, sqlite_file):
    outcome = run_code('function h(ctx, input) ctx.device.sql("erp", "DELETE FROM orders", {}) end',
                       resources=SQL, devices=sqlite_device(sqlite_file), permissions=["device.sql.read"])
    assert outcome.error.code == "permission_denied"
    assert "'device.sql.write'" in outcome.error.message
    assert sqlite3.connect(sqlite_file).execute("SELECT count(*) FROM orders").fetchone() == (3,)


def test_sql_writes_with_the_write_permission(run_code, sqlite_file):
    outcome = run_code(
        """function h(ctx, input)
          ctx.device.sql("erp", "INSERT INTO orders (id, state) VALUES (?, ?)", { 4, "new" })
          return ctx.device.sql("erp", "SELECT count(*) AS n FROM orders")[1].n
        end""",
        resources=SQL, devices=sqlite_device(sqlite_file), permissions=["device.sql.read", "device.sql.write"],
    )
    assert outcome.result == 4, outcome.error


@pytest.mark.parametrize("statement", ["ATTACH DATABASE '/tmp/x.sqlite3' AS x", "PRAGMA query_only = OFF"])
def test_sql_refuses_statements_that_widen_access(run_code, sqlite_file, statement):
    outcome = run_code(f'function h(ctx, input) return ctx.device.sql("erp", "{statement}") end',
                       resources=SQL, devices=sqlite_device(sqlite_file))
    assert outcome.error.code == "sql_error"


def test_sql_row_count_is_capped(run_code, sqlite_file):
    outcome = run_code('function h(ctx, input) return ctx.device.sql("erp", "SELECT * FROM orders") end',
                       resources=SQL, devices=sqlite_device(sqlite_file), limits=small_limits(sql_max_rows=2))
    assert outcome.error.code == "too_many_rows"


def test_sql_errors_are_plain_messages(run_code, sqlite_file):
    outcome = run_code('function h(ctx, input) return ctx.device.sql("erp", "SELECT nope FROM orders") end',
                       resources=SQL, devices=sqlite_device(sqlite_file))
    assert outcome.error.code == "sql_error"
    assert "no such column" in outcome.error.message


def test_a_long_query_is_stopped_by_the_deadline(run_code, sqlite_file):
    outcome = run_code(
        """function h(ctx, input)
          return ctx.device.sql("erp", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c")
        end""",
        resources=SQL, devices=sqlite_device(sqlite_file), limits=small_limits(timeout_ms=300),
    )
    assert outcome.error.code == "timeout"


def test_placeholders_are_translated_for_postgres_outside_quotes():
    assert postgres_query("SELECT '?', \"a?\" FROM t WHERE a = ? AND b LIKE '5%'") == (
        "SELECT '?', \"a?\" FROM t WHERE a = %s AND b LIKE '5%%'"
    )


# --- SQL on PostgreSQL ---------------------------------------------------------------------

class TcpRelay:
    """A TCP relay on 127.0.0.1 passing bytes to ``target``: a customer's database server at
    an address of its own. The platform's own database is refused as a device, so device
    tests reach the test database through this. ``connections`` counts clients accepted."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def platform_database_dsn() -> str:
    s = connection.settings_dict
    return f"postgresql://{s['USER']}:{s['PASSWORD'] or ''}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def postgres_table(db):
    """A committed table in the test database, reached like a device through a relay on a
    port of its own (the platform's own database is never a device)."""
    s = connection.settings_dict
    dsn = platform_database_dsn()
    relay = TcpRelay((s["HOST"] or "127.0.0.1", int(s["PORT"] or 5432)))
    table = f"erp_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, state text, total numeric(8,2), at timestamptz)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 'open', 9.50, '2026-01-02T03:04:05Z'), (2, 'closed', 3, NULL)")
    yield f"postgresql://{s['USER']}:{s['PASSWORD'] or ''}@localhost:{relay.port}/{s['NAME']}", table
    relay.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {table}")


@requires_postgres
def test_postgres_reads(run_code, postgres_table):
    dsn, table = postgres_table
    outcome = run_code(
        f'function h(ctx, input) return ctx.device.sql("erp", "SELECT id, state, total, at FROM {table} WHERE id = ?", {{ 1 }}) end',
        resources=SQL, devices={"erp": DeviceSpec(kind="sql", dsn=dsn)}, permissions=["device.sql.read"],
    )
    assert outcome.result == [{"id": 1, "state": "open", "total": 9.5, "at": "2026-01-02T03:04:05+00:00"}], outcome.error


@requires_postgres
def test_postgres_is_read_only_without_the_write_permission(run_code, postgres_table):
    dsn, table = postgres_table
    outcome = run_code(f'function h(ctx, input) ctx.device.sql("erp", "DELETE FROM {table}") end',
                       resources=SQL, devices={"erp": DeviceSpec(kind="sql", dsn=dsn)}, permissions=["device.sql.read"])
    assert outcome.error.code == "permission_denied"
    assert "'device.sql.write'" in outcome.error.message
    with psycopg.connect(dsn) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)


@requires_postgres
def test_postgres_writes_with_the_write_permission(run_code, postgres_table):
    dsn, table = postgres_table
    outcome = run_code(
        f"""function h(ctx, input)
          ctx.device.sql("erp", "INSERT INTO {table} (id, state) VALUES (?, ?)", {{ 3, "new" }})
          return ctx.device.sql("erp", "SELECT count(*) AS n FROM {table}")[1].n
        end""",
        resources=SQL, devices={"erp": DeviceSpec(kind="sql", dsn=dsn)},
        permissions=["device.sql.read", "device.sql.write"],
    )
    assert outcome.result == 3, outcome.error


@requires_postgres
@pytest.mark.parametrize("statement", [
    "COMMIT; DELETE FROM {table} WHERE id = 1",
    "COMMIT; INSERT INTO {table} (id, state) VALUES (9, 'forged')",
    "COMMIT; BEGIN READ WRITE; UPDATE {table} SET state = 'forged'",
])
def test_postgres_runs_one_statement_per_call(run_code, postgres_table, statement):
    dsn, table = postgres_table
    query = statement.format(table=table)
    outcome = run_code(f'function h(ctx, input) return ctx.device.sql("erp", "{query}") end',
                       resources=SQL, devices={"erp": DeviceSpec(kind="sql", dsn=dsn)}, permissions=["device.sql.read"])

    assert outcome.error.code == "sql_error"
    assert "one statement per call" in outcome.error.message
    with psycopg.connect(dsn) as conn:
        assert conn.execute(f"SELECT id, state FROM {table} ORDER BY id").fetchall() == [(1, "open"), (2, "closed")]


@requires_postgres
@pytest.mark.parametrize("statement", [
    "WITH gone AS (DELETE FROM {table} WHERE id = 1 RETURNING id) SELECT id FROM gone",
    "SELECT set_config('transaction_read_only', 'off', true), (SELECT count(*) FROM {table})",
])
def test_postgres_stays_read_only_whatever_the_one_statement_does(run_code, postgres_table, statement):
    dsn, table = postgres_table
    query = statement.format(table=table)
    outcome = run_code(f'function h(ctx, input) return ctx.device.sql("erp", "{query}") end',
                       resources=SQL, devices={"erp": DeviceSpec(kind="sql", dsn=dsn)}, permissions=["device.sql.read"])

    assert outcome.error.code in {"permission_denied", "sql_error"}, outcome.result
    with psycopg.connect(dsn) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)


@requires_postgres
def test_postgres_refuses_a_statement_timeout_change_before_a_long_query(run_code, postgres_table):
    dsn, _table = postgres_table
    outcome = run_code(
        'function h(ctx, input) return ctx.device.sql("erp", "SET LOCAL statement_timeout = 0; SELECT pg_sleep(3)") end',
        resources=SQL, devices={"erp": DeviceSpec(kind="sql", dsn=dsn)}, limits=small_limits(timeout_ms=1000),
    )
    assert outcome.error.code == "sql_error"
    assert "one statement per call" in outcome.error.message


@requires_postgres
@pytest.mark.parametrize("query", [
    "SELECT set_config('statement_timeout', '0', false), pg_sleep(3)",
    "SELECT pg_sleep(3)",
])
def test_postgres_queries_are_cancelled_at_the_deadline(run_code, postgres_table, query):
    dsn, _table = postgres_table
    outcome = run_code(f'function h(ctx, input) pcall(ctx.device.sql, "erp", "{query}") return "done" end',
                       resources=SQL, devices={"erp": DeviceSpec(kind="sql", dsn=dsn)},
                       limits=small_limits(timeout_ms=1000))

    assert outcome.error is not None and outcome.error.code == "timeout"
    with psycopg.connect(dsn) as conn:  # the statement was cancelled, not left running
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT %pg_sleep(3)%' AND state = 'active'"
                            " AND pid <> pg_backend_pid()").fetchone() == (0,)


@requires_postgres
def test_postgres_text_with_a_lone_surrogate_becomes_a_replacement_character(run_code, postgres_table):
    dsn, _table = postgres_table
    outcome = run_code("""function h(ctx, input) return ctx.device.sql("erp", [[SELECT '{"a": "\\ud800"}'::json AS j]])[1].j end""",
                       resources=SQL, devices={"erp": DeviceSpec(kind="sql", dsn=dsn)})
    assert outcome.result == {"a": "\ufffd"}, outcome.error


@pytest.mark.django_db
def test_a_sqlite_device_cannot_point_at_the_platforms_own_files(run_code, tenant_dir):
    org = Organization.objects.create(name="Victim", slug="victim")
    path = tenant_sqlite_path(org.pk)
    sqlite3.connect(path).execute("CREATE TABLE secrets (v)").connection.close()
    outcome = run_code('function h(ctx, input) return ctx.device.sql("erp", "SELECT * FROM secrets") end',
                       resources=SQL, devices=sqlite_device(path), store=MemoryStore())
    assert outcome.error.code == "sql_error"
    assert "belongs to the platform" in outcome.error.message


# --- SQLite devices stay in their organization's folder ------------------------------------

@pytest.fixture
def acme_and_globex(db, sqlite_file):
    """Two organizations; Acme's ERP file in Acme's device folder."""
    acme = Organization.objects.create(name="Acme", slug="acme")
    globex = Organization.objects.create(name="Globex", slug="globex")
    folder = sqlite_device_folder(acme.pk)
    folder.mkdir(parents=True)
    erp = sqlite_file.rename(folder / "erp.sqlite3")
    return acme, globex, erp


def test_a_device_row_pointing_at_another_organizations_file_is_refused_at_run_time(run_code, acme_and_globex):
    _acme, globex, erp = acme_and_globex
    # Saved past validation, as a row from before the rule would be.
    device = Device.objects.create(organization=globex, name="ERP", kind=ResourceKind.SQL, dsn=f"sqlite:///{erp}")

    outcome = run_code('function h(ctx, input) return ctx.device.sql("erp", "DELETE FROM orders") end',
                       resources=SQL, devices={"erp": DeviceSpec.from_device(device)})

    assert outcome.error.code == "sql_error"
    assert str(sqlite_device_folder(globex.pk).resolve()) in outcome.error.message
    assert sqlite3.connect(erp).execute("SELECT count(*) FROM orders").fetchone() == (3,)


def test_a_symlink_placed_after_saving_is_refused_at_run_time(run_code, acme_and_globex):
    _acme, globex, erp = acme_and_globex
    device = Device(organization=globex, name="ERP", kind=ResourceKind.SQL, dsn="sqlite:///erp.sqlite3")
    device.full_clean()
    device.save()
    folder = sqlite_device_folder(globex.pk)
    folder.mkdir(parents=True)
    (folder / "erp.sqlite3").symlink_to(erp)

    outcome = run_code('function h(ctx, input) return ctx.device.sql("erp", "SELECT count(*) AS n FROM orders") end',
                       resources=SQL, devices={"erp": DeviceSpec.from_device(device)})

    assert outcome.error.code == "sql_error" and "device folder" in outcome.error.message


def test_a_device_reads_a_file_of_its_own_folder(run_code, acme_and_globex):
    acme, _globex, _erp = acme_and_globex
    device = Device.objects.create(organization=acme, name="ERP", kind=ResourceKind.SQL, dsn="sqlite:///erp.sqlite3")

    outcome = run_code('function h(ctx, input) return ctx.device.sql("erp", "SELECT count(*) AS n FROM orders")[1].n end',
                       resources=SQL, devices={"erp": DeviceSpec.from_device(device)})

    assert outcome.result == 3, outcome.error


def test_a_developers_own_binding_may_open_any_file_but_the_platforms(run_code, sqlite_file):
    """``run_handler --bind`` runs on the developer's own machine, with their own files."""
    outcome = run_code('function h(ctx, input) return ctx.device.sql("erp", "SELECT count(*) AS n FROM orders")[1].n end',
                       resources=SQL, devices={"erp": DeviceSpec.from_target(f"sqlite:///{sqlite_file}")})
    assert outcome.result == 3, outcome.error


# --- where devices may connect (marketplace.egress), checked on the address connected to ------

class Listener:
    """A TCP port on 127.0.0.1 that records every connection made to it and answers none."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                return count
            conn.close()
            count += 1


@pytest.fixture
def listener():
    port = Listener()
    yield port
    port.sock.close()


GET = 'function h(ctx, input) local ok, err = pcall(ctx.device.http, "printer", { path = "/" }) return err end'
SELECT = 'function h(ctx, input) local ok, err = pcall(ctx.device.sql, "erp", "SELECT 1 AS n") return err end'


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.1", "0x7f000001", "[::ffff:127.0.0.1]"])
def test_a_name_resolving_to_a_closed_private_address_is_refused_before_connecting(run_code, settings, listener, host):
    settings.JUNCTION_DEVICE_ALLOW_PRIVATE = False
    outcome = run_code(GET, resources=HTTP, devices={"printer": DeviceSpec(kind="http", base_url=f"http://{host}:{listener.port}/")})

    assert outcome.result.endswith("is private to the platform's network and cannot be a device"), outcome.error
    assert "http_error: GET /: address 127.0.0.1" in outcome.result or "address ::1" in outcome.result
    assert listener.connections() == 0


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "0.0.0.0", "[::ffff:127.0.0.1]"])
def test_the_platforms_broker_is_refused_as_an_http_device_even_on_open_loopback(run_code, settings, listener, host):
    settings.JUNCTION_DEVICE_ALLOW_PRIVATE = True
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{listener.port}/0"
    outcome = run_code(GET, resources=HTTP, devices={"printer": DeviceSpec(kind="http", base_url=f"http://{host}:{listener.port}/")})

    assert "is the platform's own broker and cannot be a device" in outcome.result, outcome.error
    assert listener.connections() == 0


def test_the_platforms_broker_is_refused_as_a_postgresql_device(run_code, settings, listener):
    """On any database backend: a PostgreSQL DSN at the broker's address reaches nothing."""
    settings.JUNCTION_DEVICE_ALLOW_PRIVATE = True
    settings.CELERY_BROKER_URL = f"redis://localhost:{listener.port}/0"
    outcome = run_code(SELECT, resources=SQL, devices={"erp": DeviceSpec(kind="sql", dsn=f"postgresql://svc@127.0.0.1:{listener.port}/x")})

    assert outcome.result.endswith("sql_error: cannot connect to the database: address 127.0.0.1 is the platform's own broker and cannot be a device")
    assert listener.connections() == 0


def test_a_metadata_address_is_refused(run_code):
    outcome = run_code(GET, resources=HTTP, devices={"printer": DeviceSpec(kind="http", base_url="http://169.254.169.254/latest/")})
    assert outcome.result.endswith("http_error: GET /latest/: address 169.254.169.254 is in a network closed to devices")


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")  # only read by the policy here
def test_a_developers_binding_follows_the_same_network_rules(run_code, settings, listener):
    """``run_handler --bind`` is refused the platform's own services like a device row."""
    settings.DATABASES = {**settings.DATABASES, "replica": {"ENGINE": "django.db.backends.postgresql",
                                                            "HOST": "localhost", "PORT": listener.port}}
    outcome = run_code(SELECT, resources=SQL, devices={"erp": DeviceSpec.from_target(f"postgresql://u@127.1:{listener.port}/x")})
    assert "is the platform's own database and cannot be a device" in outcome.result
    assert listener.connections() == 0


@pytest.mark.parametrize("dsn", ["postgresql:///junction", "postgresql://u@db.example/x?host=/var/run/postgresql"])
def test_a_postgresql_device_cannot_use_a_unix_socket(run_code, dsn):
    """A socket on the platform's machine is where its own database listens."""
    outcome = run_code(SELECT, resources=SQL, devices={"erp": DeviceSpec(kind="sql", dsn=dsn)})
    assert outcome.result.endswith("Unix sockets are refused"), outcome.error


def test_private_networks_on_the_allow_list_are_reached(run_code, settings, device_server):
    settings.JUNCTION_DEVICE_ALLOW_PRIVATE = False
    settings.JUNCTION_DEVICE_ALLOW_NETWORKS = ["127.0.0.0/8"]
    outcome = run_code('function h(ctx, input) return ctx.device.http("printer", { path = "/ping" }).status end',
                       resources=HTTP, devices=http_device(device_server))
    assert outcome.result == 200, outcome.error


@requires_postgres
def test_the_platforms_own_database_is_refused_as_a_postgresql_device(run_code, settings, db):
    """In development, with trust authentication, this DSN would read every organization's data."""
    settings.JUNCTION_DEVICE_ALLOW_PRIVATE = True
    for dsn in (platform_database_dsn(), platform_database_dsn().replace("127.0.0.1", "localhost")):
        outcome = run_code(SELECT, resources=SQL, devices={"erp": DeviceSpec(kind="sql", dsn=dsn)})
        assert "is the platform's own database and cannot be a device" in outcome.result, outcome.error


@requires_postgres
def test_a_postgresql_device_name_is_connected_at_its_checked_address(run_code, postgres_table):
    """The DSN names ``localhost``; the session runs on the address that was checked."""
    dsn, _table = postgres_table
    outcome = run_code('function h(ctx, input) return ctx.device.sql("erp", "SELECT host(inet_client_addr()) AS a")[1].a end',
                       resources=SQL, devices={"erp": DeviceSpec(kind="sql", dsn=dsn)}, permissions=["device.sql.read"])
    assert outcome.result in {"127.0.0.1", "::1"}, outcome.error


class PasswordCatcher:
    """A server speaking just enough of PostgreSQL's protocol to ask for a cleartext
    password and record what the client sends: what a customer's server would receive."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    length = int.from_bytes(conn.recv(4), "big")
                    startup = conn.recv(length - 4)
                    if startup[:4] == (80877103).to_bytes(4, "big"):  # SSLRequest: "no", then the real startup
                        conn.sendall(b"N")
                        length = int.from_bytes(conn.recv(4), "big")
                        conn.recv(length - 4)
                    conn.sendall(b"R" + (8).to_bytes(4, "big") + (3).to_bytes(4, "big"))  # cleartext, please
                    kind = conn.recv(1)
                    if kind == b"p":
                        length = int.from_bytes(conn.recv(4), "big")
                        self.received.append(conn.recv(length - 4))
                except OSError:
                    pass


@pytest.mark.parametrize("source", ["PGPASSWORD", "PGPASSFILE"])
def test_a_postgresql_device_is_never_sent_the_platforms_own_password(run_code, monkeypatch, tmp_path, source):
    """libpq fills a DSN's missing password from the platform's environment and password
    file; a device's server must not receive them."""
    catcher = PasswordCatcher()
    if source == "PGPASSWORD":
        monkeypatch.setenv("PGPASSWORD", "platform-secret")
    else:
        passfile = tmp_path / "pgpass"
        passfile.write_text("*:*:*:*:platform-secret\n")
        passfile.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(passfile))
    outcome = run_code(SELECT, resources=SQL,
                       devices={"erp": DeviceSpec(kind="sql", dsn=f"postgresql://svc@127.0.0.1:{catcher.port}/erp")})
    catcher.sock.close()

    assert "sql_error" in outcome.result
    assert not any(b"platform-secret" in message for message in catcher.received), catcher.received


def test_a_postgresql_device_is_sent_its_own_password(run_code, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "platform-secret")
    catcher = PasswordCatcher()
    outcome = run_code(SELECT, resources=SQL,
                       devices={"erp": DeviceSpec(kind="sql", dsn=f"postgresql://svc:customer-pw@127.0.0.1:{catcher.port}/erp")})
    catcher.sock.close()

    assert "sql_error" in outcome.result
    assert catcher.received == [b"customer-pw\x00"]
