"""``push_integration --server URL --token T``: the local push's steps through a live server's
API, with the local push's output and exit codes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from marketplace.models import ApiSchema, Integration, IntegrationVersion
from marketplace.services.tokens import create_api_token
from tests import factories
from tests.packaging import helpers

from . import push_urls

README = (helpers.GOOD / "README.md").read_text()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def server_urls(settings):
    settings.ROOT_URLCONF = "tests.api.push_urls"
    push_urls.received.clear()
    yield
    push_urls.received.clear()
    push_urls.fail_deletes = False


def token_of(user) -> str:
    return create_api_token(user=user, name="ci")[1]


def push(live_server, token, *args) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    with pytest.raises(SystemExit) as exc:
        call_command("push_integration", *map(str, args), "--server", live_server.url, "--token", token,
                     stdout=out, stderr=err)
    return exc.value.code, out.getvalue(), err.getvalue()


def test_a_missing_integration_is_created_through_the_api_then_published(live_server, acme, publisher):
    code, out, _ = push(live_server, token_of(publisher), helpers.GOOD, "--organization", acme.slug,
                        "--publish", "--notes", "First release", "--json")

    assert code == 0
    result = json.loads(out)
    assert {k: result[k] for k in ("status", "integration", "created", "version", "valid")} == {
        "status": "published", "integration": "printer-sync", "created": True, "version": 1, "valid": True}
    assert set(result) == {"status", "integration", "created", "version", "valid", "errors", "warnings"}
    assert ("POST", "/api/v1/integrations/", {
        "slug": "printer-sync", "name": "Printer sync", "summary": "Keeps printer status and orders in step.",
        "description": README, "visibility": "public", "organization": acme.slug,
    }) in push_urls.received
    integration = Integration.objects.get(slug="printer-sync")
    assert (integration.owner, integration.name) == (acme, "Printer sync")
    version = integration.versions.get()
    assert (version.number, version.notes, version.available) == (1, "First release", True)
    assert set(version.files) == {"main.lua", "lifecycle.lua"}
    assert ApiSchema.objects.get(integration=integration).endpoints.count() == 5


def test_the_output_is_the_local_pushs(live_server, acme, publisher, tmp_path):
    """The same package pushed locally and remotely prints the same JSON."""
    factories.make_integration(acme, name="Mini", slug="mini")
    code, remote_out, _ = push(live_server, token_of(publisher), helpers.FIXTURES / "bad" / "lua_syntax",
                               "--integration", "mini", "--json")
    factories.make_integration(acme, name="Mini again", slug="mini-again")
    local_out = StringIO()
    with pytest.raises(SystemExit) as local:
        call_command("push_integration", str(helpers.FIXTURES / "bad" / "lua_syntax"), "--integration", "mini-again",
                     "--json", stdout=local_out)

    assert (code, local.value.code) == (1, 1)
    assert json.loads(remote_out) == {**json.loads(local_out.getvalue()), "integration": "mini"}
    assert json.loads(remote_out)["status"] == "drafted"
    assert Integration.objects.get(slug="mini").versions.drafts().get().files["main.lua"].startswith("function sync")


def test_pushing_again_replaces_the_draft_and_prints_the_report(live_server, acme, publisher):
    token = token_of(publisher)
    push(live_server, token, helpers.GOOD, "--organization", acme.slug, "--publish", "--notes", "v1")

    code, out, _ = push(live_server, token, helpers.GOOD)

    assert code == 0
    assert out.splitlines()[0] == "saved the draft of printer-sync"
    assert out.splitlines()[-1].startswith("valid: 0 error(s)")
    assert Integration.objects.count() == 1 and IntegrationVersion.objects.drafts().count() == 1


def test_a_zip_is_sent_as_it_is(live_server, acme, publisher, tmp_path):
    factories.make_integration(acme, name="Mini", slug="mini")
    path = tmp_path / "mini.zip"
    path.write_bytes(helpers.make_zip())

    code, out, _ = push(live_server, token_of(publisher), path, "--integration", "mini", "--publish", "--notes", "Zip")

    assert code == 0 and "published mini v1" in out
    assert Integration.objects.get(slug="mini").versions.get().files == {"main.lua": helpers.MINI_LUA}


def test_a_refused_publish_says_the_draft_holds_the_package(live_server, acme, publisher):
    integration = factories.make_integration(acme, name="Mini", slug="mini")

    code, out, err = push(live_server, token_of(publisher), helpers.FIXTURES / "bad" / "permission_missing",
                          "--integration", "mini", "--publish", "--notes", "Broken")

    assert code == 1
    assert err.splitlines()[0] == "refused: not published; the draft on the server holds the pushed package"
    assert "main.lua:3: ctx.integration.cacheSet needs the permission 'integration.cache'" in err
    assert not integration.versions.published().exists()
    assert integration.versions.drafts().exists()


def test_a_refused_publish_in_json_has_the_local_shape(live_server, acme, publisher):
    factories.make_integration(acme, name="Mini", slug="mini")
    package = helpers.FIXTURES / "bad" / "permission_missing"

    code, out, _ = push(live_server, token_of(publisher), package, "--integration", "mini", "--publish",
                        "--notes", "Broken", "--json")
    local = StringIO()
    with pytest.raises(SystemExit):
        call_command("push_integration", str(package), "--integration", "mini", "--publish", "--notes", "Broken",
                     "--json", stdout=local)

    assert code == 1
    assert json.loads(out) == json.loads(local.getvalue())
    assert json.loads(out) == {"status": "refused", "code": None, "errors": {"main.lua:3": [
        "ctx.integration.cacheSet needs the permission 'integration.cache'; add it to permissions"]}}


def test_a_hostile_package_is_refused_before_anything_is_sent(live_server, acme, publisher, tmp_path):
    path = tmp_path / "evil.zip"
    path.write_bytes(helpers.make_zip(extra=[(helpers.symlink_info("lib.lua"), b"/etc/passwd")]))

    code, out, _ = push(live_server, token_of(publisher), path, "--organization", acme.slug, "--json")

    assert code == 1
    assert json.loads(out) == {"status": "refused", "code": "package_symlink",
                               "errors": {"lib.lua": ["lib.lua is a symbolic link; packages hold plain files only"]}}
    assert push_urls.received == [] and not Integration.objects.exists()


def test_notes_are_checked_before_anything_is_sent(live_server, acme, publisher):
    code, out, _ = push(live_server, token_of(publisher), helpers.GOOD, "--organization", acme.slug, "--publish",
                        "--json")
    assert code == 1
    assert json.loads(out)["errors"] == {"notes": ["notes are required to publish: say what changed"]}
    assert push_urls.received == [] and not Integration.objects.exists()


def test_a_package_the_server_refuses_leaves_no_new_integration(live_server, acme, publisher, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(helpers.MINI_MANIFEST))
    (tmp_path / "main.lua").write_text(helpers.MINI_LUA)
    (tmp_path / "openapi.json").write_text('{"openapi": "3.0.0"}')  # read fine here, refused by the server

    code, _, err = push(live_server, token_of(publisher), tmp_path, "--organization", acme.slug)

    assert code == 1
    assert err.splitlines()[0] == "refused: nothing was saved"
    assert "openapi.json" in err
    assert [method for method, _, _ in push_urls.received] == ["POST", "DELETE"]
    assert not Integration.objects.exists()


def test_a_clean_up_the_server_refuses_is_reported(live_server, acme, publisher, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(helpers.MINI_MANIFEST))
    (tmp_path / "main.lua").write_text(helpers.MINI_LUA)
    (tmp_path / "openapi.json").write_text('{"openapi": "3.0.0"}')
    push_urls.fail_deletes = True

    code, _, err = push(live_server, token_of(publisher), tmp_path, "--organization", acme.slug)

    assert code == 1
    assert err.splitlines()[0] == "refused: the integration mini created for this push is still on the server (HTTP 409)"
    assert Integration.objects.filter(slug="mini").exists()


def test_a_member_who_does_not_publish_is_refused(live_server, acme, member):
    integration = factories.make_integration(acme, name="Mini", slug="mini")

    code, _, err = push(live_server, token_of(member), helpers.GOOD, "--integration", "mini")

    assert code == 1
    assert "publisher role" in err
    assert not integration.versions.exists()


def test_another_organizations_integration_is_not_found(live_server, acme, outsider):
    factories.make_integration(acme, name="Mini", slug="mini")
    with pytest.raises(CommandError, match="no integration with the slug 'mini' that this token publishes for"):
        push(live_server, token_of(outsider), helpers.GOOD, "--integration", "mini")


def test_a_bad_token_is_an_error(live_server, acme):
    with pytest.raises(CommandError, match="refused the token: invalid or revoked token"):
        push(live_server, "jct_not-a-token", helpers.GOOD, "--organization", acme.slug)


def test_an_unreachable_server_is_an_error(acme, publisher):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(CommandError, match="cannot reach http://127.0.0.1"):
        call_command("push_integration", str(helpers.GOOD), "--server", f"http://127.0.0.1:{port}",
                     "--token", "jct_x")


@pytest.mark.parametrize("args, message", [
    (["--token", "jct_x"], "--token goes with --server"),
    (["--server", "http://127.0.0.1:9", "--token", "jct_x", "--user", "alice"], "--user is for local pushes"),
    (["--server", "http://127.0.0.1:9"], "--server needs --token"),
    (["--server", "ftp://example", "--token", "jct_x"], "--server must be an http"),
])
def test_option_mistakes_are_errors(db, monkeypatch, args, message):
    monkeypatch.delenv("JUNCTION_API_TOKEN", raising=False)
    with pytest.raises(CommandError, match=message):
        call_command("push_integration", str(helpers.GOOD), *args)


def test_the_token_may_come_from_the_environment(live_server, acme, publisher, monkeypatch):
    factories.make_integration(acme, name="Mini", slug="printer-sync")
    monkeypatch.setenv("JUNCTION_API_TOKEN", token_of(publisher))
    out = StringIO()
    with pytest.raises(SystemExit) as exc:
        call_command("push_integration", str(helpers.GOOD), "--server", live_server.url + "/api/v1/", stdout=out)
    assert exc.value.code == 0 and out.getvalue().startswith("saved the draft of printer-sync")


def test_the_remote_push_needs_no_database(live_server, acme, publisher):
    """As a CI job runs it: its own process, whose database does not exist."""
    factories.make_integration(acme, name="Mini", slug="mini")
    env = {**os.environ, "DATABASE_URL": "postgres://nobody@127.0.0.1:9/nowhere", "JUNCTION_API_TOKEN": token_of(publisher)}

    done = subprocess.run(
        [sys.executable, "manage.py", "push_integration", str(helpers.FIXTURES / "bad" / "lua_syntax"),
         "--server", live_server.url, "--integration", "mini", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )

    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["status"] == "drafted"
    assert Integration.objects.get(slug="mini").versions.drafts().exists()
