"""``manage.py run_handler``: the JSON contract and exit codes, run as a real subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"status", "result", "error", "logs", "duration_ms"}

MAIN = """
function remember(ctx, input)
  ctx.integration.cacheSet({ key = "n", value = input.n })
  ctx.log.info("remembered", { n = input.n, site = ctx.config.site })
  return { ok = true }
end

function recall(ctx, input)
  return { n = ctx.integration.cacheGet("n") + 1 }
end

function fail(ctx, input)
  error("boom")
end

function spin(ctx, input)
  while true do end
end

function fetch(ctx, input)
  local r = ctx.device.http("api", { path = "/hello" })
  return { status = r.status, path = r.json.path }
end
"""

MANIFEST = {
    "name": "cli-test",
    "configSchema": {"type": "object", "properties": {"site": {"type": "string", "default": "HQ"}}},
    "resources": {"api": {"kind": "http"}},
    "permissions": ["integration.cache", "log", "device.http"],
    "handlers": {
        "remember": {"type": "timer", "file": "main.lua", "function": "remember", "schedule": {"every": "1m"}},
        "recall": {"type": "rpc", "file": "main.lua", "function": "recall"},
        "fail": {"type": "rpc", "file": "main.lua", "function": "fail"},
        "spin": {"type": "rpc", "file": "main.lua", "function": "spin", "limits": {"instructions": 100000}},
        "fetch": {"type": "rpc", "file": "main.lua", "function": "fetch"},
    },
}


@pytest.fixture
def package(tmp_path) -> Path:
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(MANIFEST))
    (folder / "main.lua").write_text(MAIN)
    return folder


def run(*args) -> tuple[int, list[dict], str]:
    proc = subprocess.run(
        [sys.executable, "manage.py", "run_handler", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, lines, proc.stderr


def test_handlers_share_a_throw_away_store_and_print_one_object_each(package):
    code, lines, stderr = run(package, "remember,recall", "--input", '{"n": 41}', "--config", '{"site": "Lab"}', "--json")
    assert code == 0, stderr
    assert [set(line) for line in lines] == [KEYS, KEYS]
    first, second = lines
    assert first["status"] == "succeeded" and first["error"] is None and first["result"] == {"ok": True}
    assert first["logs"] == [{"level": "info", "message": "remembered", "fields": {"n": 41, "site": "Lab"}}]
    assert isinstance(first["duration_ms"], int)
    assert second["result"] == {"n": 42}


def test_a_failing_handler_exits_1(package):
    code, lines, _ = run(package, "remember,fail,spin", "--input", '{"n": 1}', "--json")
    assert code == 1
    assert [line["status"] for line in lines] == ["succeeded", "failed", "failed"]
    assert lines[1]["error"] == {"code": "lua_error", "message": "main.lua:13: boom"}
    assert lines[1]["result"] is None
    assert lines[2]["error"]["code"] == "instruction_limit"


GHOST = {**MANIFEST, "handlers": {**MANIFEST["handlers"], "ghost": {"type": "rpc", "file": "missing.lua", "function": "ghost"}}}


@pytest.mark.parametrize(
    "handler, manifest, message",
    [
        ("nope", None, "no handler 'nope'"),
        # the whole package is checked, not only the handler asked for
        ("recall", json.dumps(GHOST), "handler_file_missing"),
        ("recall", "{not json", "not valid JSON"),
        # nested 50,000 deep: reported like any invalid package, not a RecursionError traceback
        pytest.param("recall", json.dumps({**MANIFEST, "title": "@"}).replace('"@"', "[" * 50_000 + "]" * 50_000),
                     "manifest_too_deep: the manifest is nested deeper than 64 levels", id="nested-50000-deep"),
        pytest.param("recall", json.dumps(MANIFEST)[:-1] + ', "name": NaN}',
                     "manifest_json: manifest.json is not valid JSON: NaN", id="nan"),
    ],
)
def test_an_invalid_package_exits_2(package, handler, manifest, message):
    if manifest is not None:
        (package / "manifest.json").write_text(manifest)
    code, lines, stderr = run(package, handler, "--json")
    assert "Traceback" not in stderr
    assert code == 2
    assert len(lines) == 1 and set(lines[0]) == KEYS
    assert lines[0]["error"]["code"] == "package_invalid"
    assert message in lines[0]["error"]["message"]


def test_a_zip_package_with_a_bound_http_device(package, tmp_path, device_server, other_origin):
    archive = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in package.iterdir():
            zf.write(file, f"pkg/{file.name}")
    code, lines, stderr = run(archive, "fetch", "--bind", f"api={device_server.url}/v1", "--json")
    assert code == 0, stderr
    assert lines[0]["result"] == {"status": 200, "path": "/v1/hello"}
    assert other_origin.requests == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "{not json"], "--input is not valid JSON"),
        pytest.param(["--input", "[" * 50_000], "--input is not valid JSON: nested deeper than 64 levels", id="deep-input"),
        (["--config", '{"site": NaN}'], "--config is not valid JSON: NaN is not a JSON number"),
        (["--bind", "api=sqlite:////tmp/x.db"], "the resource is http"),
    ],
)
def test_bad_command_line_values_exit_2(package, args, message):
    code, lines, _ = run(package, "recall", *args, "--json")
    assert code == 2
    assert lines[0]["error"]["code"] == "usage_error"
    assert message in lines[0]["error"]["message"]


CALLBACK_MANIFEST = {
    "name": "cli-callback",
    "permissions": ["callback"],
    "handlers": {
        "ask": {"type": "rpc", "file": "main.lua", "function": "ask"},
        "onAnswer": {"type": "event", "event": "answer", "file": "main.lua", "function": "on_answer"},
    },
}
CALLBACK_MAIN = """
function ask(ctx, input)
  return { url = ctx.callback.url("answer", { ttl = 60 }) }
end

function on_answer(ctx, input)
  return input.payload
end
"""


def test_run_handler_prints_the_callback_url_it_would_mint_and_mints_nothing(tmp_path):
    folder = tmp_path / "callback"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(CALLBACK_MANIFEST))
    (folder / "main.lua").write_text(CALLBACK_MAIN)
    code, lines, stderr = run(folder, "ask", "--json")
    assert code == 0, stderr
    url = lines[0]["result"]["url"]
    assert url.endswith("/hooks/callback/dry-run-1")
    assert f"ask: ctx.callback.url would mint {url} (posts 'answer' once, for 60 s); nothing was minted" in stderr
