"""The command-line contracts: validate_integration (subprocess, as CI runs it) and
push_integration."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from marketplace.models import ApiSchema, Integration, IntegrationVersion
from tests import factories

from . import helpers

ROOT = Path(__file__).resolve().parents[2]
ITEM_KEYS = {"code", "message", "file", "line", "path"}


def validate(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "validate_integration", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                archive.write(path, path.relative_to(folder).as_posix())
    return target


def test_a_valid_folder_exits_0_with_the_json_shape():
    run = validate(helpers.GOOD, "--json")

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"valid": True, "errors": [], "warnings": []}


def test_an_invalid_zip_exits_1_with_located_errors(tmp_path):
    package = zip_folder(helpers.FIXTURES / "bad" / "lua_syntax", tmp_path / "bad.zip")

    run = validate(package, "--json")

    assert run.returncode == 1
    report = json.loads(run.stdout)
    assert set(report) == {"valid", "errors", "warnings"} and report["valid"] is False
    assert all(set(item) == ITEM_KEYS for item in report["errors"] + report["warnings"])
    [error] = report["errors"]
    assert (error["code"], error["file"], error["line"], error["path"]) == ("lua_syntax", "main.lua", 3, None)
    assert "main.lua:3:" in error["message"]


def test_a_hostile_zip_exits_1_with_its_refusal(tmp_path):
    path = tmp_path / "evil.zip"
    path.write_bytes(helpers.make_zip(extra=[(helpers.symlink_info("lib.lua"), b"/etc/passwd")]))

    run = validate(path, "--json")

    assert run.returncode == 1
    assert [(e["code"], e["file"]) for e in json.loads(run.stdout)["errors"]] == [("package_symlink", "lib.lua")]


def test_a_manifest_nested_50000_deep_exits_1_with_the_json_report(tmp_path):
    nested = "[" * 50_000 + "]" * 50_000
    (tmp_path / "manifest.json").write_text(json.dumps({**helpers.MINI_MANIFEST, "description": "@"}).replace('"@"', nested))
    (tmp_path / "main.lua").write_text(helpers.MINI_LUA)

    run = validate(tmp_path, "--json")

    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    report = json.loads(run.stdout)
    assert report["valid"] is False
    assert [(e["code"], e["file"]) for e in report["errors"]] == [("manifest_too_deep", "manifest.json")]


# --- in-process runs (faster; push_integration needs the test database) --------------------------

def run_command(name: str, *args) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    with pytest.raises(SystemExit) as exc:
        call_command(name, *map(str, args), stdout=out, stderr=err)
    return exc.value.code, out.getvalue(), err.getvalue()


def test_warnings_alone_keep_a_package_valid(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({**helpers.MINI_MANIFEST, "permissions": ["log", "tenant.sql"]}))
    (tmp_path / "main.lua").write_text(helpers.MINI_LUA)

    code, out, _ = run_command("validate_integration", tmp_path, "--json")

    assert code == 0
    assert [(w["code"], w["path"]) for w in json.loads(out)["warnings"]] == [("permission_unused", "permissions.1")]


def test_a_missing_package_exits_1(tmp_path):
    code, out, _ = run_command("validate_integration", tmp_path / "nowhere.zip", "--json")
    assert code == 1
    assert json.loads(out)["errors"][0]["code"] == "package_unreadable"


def test_the_readable_output_names_codes_and_places():
    code, out, _ = run_command("validate_integration", helpers.FIXTURES / "bad" / "schedule_too_frequent")

    assert code == 1
    assert "schedule_too_frequent" in out
    assert "handlers.sync.schedule.every" in out
    assert out.strip().endswith("INVALID: 1 error(s), 0 warning(s)")

def push(*args) -> tuple[int, str, str]:
    return run_command("push_integration", *args)


def test_push_creates_the_integration_and_publishes(acme):
    code, out, _ = push(helpers.GOOD, "--organization", acme.slug, "--publish", "--notes", "First release", "--json")

    assert code == 0
    result = json.loads(out)
    assert (result["status"], result["integration"], result["created"], result["version"]) == ("published", "printer-sync", True, 1)
    integration = Integration.objects.get(slug="printer-sync")
    assert (integration.owner, integration.name, integration.summary) == (acme, "Printer sync", "Keeps printer status and orders in step.")
    assert integration.description.startswith("# Printer sync")
    assert integration.api_schemas.get().endpoints.count() == 5
    version = integration.versions.get()
    assert version.is_published and version.available and version.notes == "First release"
    assert set(version.files) == {"main.lua", "lifecycle.lua"}


def test_pushing_again_drafts_on_the_same_integration(acme):
    push(helpers.GOOD, "--organization", acme.slug, "--publish", "--notes", "v1")
    code, out, _ = push(helpers.GOOD, "--organization", acme.slug)

    assert code == 0
    assert "saved the draft of printer-sync" in out
    assert Integration.objects.count() == 1
    assert IntegrationVersion.objects.drafts().count() == 1


def test_push_refuses_to_publish_an_invalid_package_and_writes_nothing(acme):
    code, out, err = push(helpers.FIXTURES / "bad" / "permission_missing", "--organization", acme.slug,
                          "--publish", "--notes", "Broken")

    assert code == 1
    assert "refused: nothing was saved" in err
    assert "main.lua:3: ctx.integration.cacheSet needs the permission 'integration.cache'" in err
    assert not Integration.objects.exists() and not ApiSchema.objects.exists()


def test_push_without_publish_saves_an_invalid_draft_and_exits_1(acme):
    integration = factories.make_integration(acme, name="Mini", slug="mini")

    code, out, _ = push(helpers.FIXTURES / "bad" / "lua_syntax", "--integration", "mini", "--json")

    assert code == 1
    result = json.loads(out)
    assert (result["status"], result["valid"]) == ("drafted", False)
    assert [e["code"] for e in result["errors"]] == ["lua_syntax"]
    assert integration.versions.drafts().get().files["main.lua"].startswith("function sync")


def test_push_refuses_a_hostile_zip(acme, tmp_path):
    path = tmp_path / "evil.zip"
    path.write_bytes(helpers.make_zip(extra=[(helpers.symlink_info("lib.lua"), b"/etc/passwd")]))

    code, out, _ = push(path, "--organization", acme.slug, "--json")

    assert code == 1
    assert json.loads(out) == {"status": "refused", "code": "package_symlink",
                               "errors": {"lib.lua": ["lib.lua is a symbolic link; packages hold plain files only"]}}
    assert not Integration.objects.exists()


def test_push_as_a_user_applies_their_permissions(acme, outsider):
    integration = factories.make_integration(acme, name="Mini", slug="mini")

    code, _, err = push(helpers.FIXTURES / "bad" / "lua_syntax", "--integration", integration.slug, "--user", outsider.username)

    assert code == 1
    assert "publisher role" in err
    assert not integration.versions.exists()
