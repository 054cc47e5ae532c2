"""Test connection (services.connections.check_connection): a HEAD of an HTTP device's
base URL or SELECT 1 on a SQL device, bounded in time, through the runtime's clients so
the egress policy applies as in runs; the reason never carries a secret."""
from __future__ import annotations

import socket
import sqlite3

import pytest

from marketplace.choices import ResourceKind
from marketplace.exceptions import NotFound
from marketplace.services.connections import check_connection
from tests import factories


def test_http_device_answering_is_ok_with_its_credentials_sent(acme, member, device_server):
    device = factories.make_device(acme, ResourceKind.HTTP, base_url=device_server.url + "api/",
                                   credentials={"token": "tok-very-secret"}, headers={"X-Site": "plant-1"})
    result = check_connection(device=device, user=member)
    assert result.ok and "HTTP 200" in result.reason
    [request] = device_server.requests
    assert request["method"] == "HEAD" and request["path"] == "/api/"
    assert request["headers"]["Authorization"] == "Bearer tok-very-secret"
    assert request["headers"]["X-Site"] == "plant-1"


def test_http_device_failing_is_reported_with_its_status(acme, member, device_server):
    device_server.status = 503
    device = factories.make_device(acme, ResourceKind.HTTP, base_url=device_server.url)
    result = check_connection(device=device, user=member)
    assert not result.ok and "HTTP 503" in result.reason


def test_nothing_listening_fails_without_secrets_in_the_reason(acme, member):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    device = factories.make_device(acme, ResourceKind.HTTP, base_url=f"http://127.0.0.1:{port}/",
                                   credentials={"username": "svc", "password": "pa55-word-secret"})
    result = check_connection(device=device, user=member)
    assert not result.ok and "refused" in result.reason.lower()
    assert "pa55-word-secret" not in result.reason


def test_a_device_that_never_answers_times_out_on_the_setting(acme, member, settings):
    settings.JUNCTION_DEVICE_TEST_TIMEOUT_SECONDS = 1
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        device = factories.make_device(acme, ResourceKind.HTTP, base_url=f"http://127.0.0.1:{silent.getsockname()[1]}/")
        result = check_connection(device=device, user=member)
    assert not result.ok and ("timed out" in result.reason or "within 1 s" in result.reason)


def test_the_egress_policy_applies_as_in_runs(acme, member, settings):
    device = factories.make_device(acme, ResourceKind.HTTP, base_url="http://127.0.0.1:9/")
    settings.JUNCTION_DEVICE_ALLOW_PRIVATE = False
    result = check_connection(device=device, user=member)
    assert not result.ok and "private" in result.reason


def test_sql_device_select_1(acme, member, device_sqlite_dir):
    folder = device_sqlite_dir / str(acme.pk)
    folder.mkdir(parents=True)
    sqlite3.connect(folder / "erp.sqlite3").close()
    device = factories.make_device(acme, ResourceKind.SQL, dsn="sqlite:///erp.sqlite3")
    assert check_connection(device=device, user=member).ok
    missing = factories.make_device(acme, ResourceKind.SQL, dsn="sqlite:///missing.sqlite3")
    result = check_connection(device=missing, user=member)
    assert not result.ok and "cannot open" in result.reason


def test_another_organizations_device_is_not_found(globex, member):
    device = factories.make_device(globex, ResourceKind.HTTP)
    with pytest.raises(NotFound):
        check_connection(device=device, user=member)
