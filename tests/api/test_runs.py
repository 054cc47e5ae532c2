"""``/api/v1/runs/``: the runs a caller sees (whole for the instance's organization, support
fields only for the integration's publisher), one run with its logs, and replay."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.choices import Role, RunStatus, Trigger
from marketplace.models import HandlerRun
from tests import factories

from .conftest import client_for

DETAIL_ONLY = {"result", "error", "input", "logs"}


@pytest.fixture
def stranger(db):
    """A member of a third organization: neither the customer nor the publisher."""
    user = factories.make_user("ian")
    factories.add_member(user, factories.make_org("Initech"), Role.MEMBER)
    return user


@pytest.fixture
def instance(acme, globex):
    """Acme's instance of an integration Globex publishes (oscar is its publisher)."""
    version = factories.make_published(factories.make_integration(globex))
    return factories.make_instance(version, acme)


def finished_run(instance, **fields):
    fields = {"status": RunStatus.SUCCEEDED, "input": {"order": "customer-input"}, "result": {"ok": "customer-result"},
              "logs": [{"level": "info", "message": "customer-log-line", "fields": {}}],
              "started_at": timezone.now(), "finished_at": timezone.now(), "duration_ms": 12, **fields}
    return factories.make_run(instance, **fields)


def failed_run(instance, **fields):
    return finished_run(instance, status=RunStatus.FAILED, result=None, error_code="lua_error",
                        error_message="main.lua:3: customer-error-text", error_file="main.lua", error_line=3, **fields)


def test_the_customer_sees_its_runs_whole_newest_first(api, member, instance):
    older = finished_run(instance)
    newer = failed_run(instance)
    response = api(member).get("/api/v1/runs/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2 and [r["id"] for r in body["results"]] == [newer.pk, older.pk]
    first = body["results"][0]
    assert first["instance"] == instance.pk and first["handler"] == "sync" and first["status"] == "failed"
    assert first["error"] == {"code": "lua_error", "message": "main.lua:3: customer-error-text", "file": "main.lua",
                              "line": 3}
    assert body["results"][1]["result"] == {"ok": "customer-result"} and body["results"][1]["error"] is None
    # The list leaves the heavy fields to the run's own page.
    assert "input" not in first and isinstance(first["logs"], list)


def test_one_run_has_its_input_logs_and_error(api, member, instance):
    run = failed_run(instance)
    body = api(member).get(f"/api/v1/runs/{run.pk}/").json()
    assert body["logs"] == [{"level": "info", "message": "customer-log-line", "fields": {}}]
    assert body["input"] == {"order": "customer-input"} and body["error"]["message"] == "main.lua:3: customer-error-text"
    for name in ("id", "instance", "handler", "trigger", "status", "result", "error", "logs", "duration_ms",
                 "created_at", "started_at", "finished_at", "attempt", "error_code"):
        assert name in body


def test_the_publisher_sees_its_customers_runs_as_support_fields_only(api, outsider, instance):
    run = failed_run(instance)
    client = api(outsider)
    listed = client.get("/api/v1/runs/")
    one = client.get(f"/api/v1/runs/{run.pk}/")
    for response in (listed, one):
        assert response.status_code == 200
        text = response.content.decode()
        for private in ("customer-error-text", "customer-log-line", "customer-result", "customer-input"):
            assert private not in text
    item = listed.json()["results"][0]
    assert item["id"] == run.pk and item["status"] == "failed" and item["error_code"] == "lua_error"
    assert item["duration_ms"] == 12 and not DETAIL_ONLY & item.keys()
    assert set(one.json()) == {"id", "instance", "handler", "trigger", "status", "attempt", "first_run", "starts",
                               "created_at", "started_at", "finished_at", "duration_ms", "error_code"}


def test_a_list_mixing_own_and_customers_runs_drops_details_per_run(api, publisher, globex, acme):
    """Alice publishes for Acme and Acme installs its own integration and Globex's customer
    does too: her own organization's run shows whole, the customer's as support fields."""
    version = factories.make_published(factories.make_integration(acme))
    own = finished_run(factories.make_instance(version, acme))
    theirs = finished_run(factories.make_instance(version, globex))
    results = {r["id"]: r for r in api(publisher).get("/api/v1/runs/").json()["results"]}
    assert results[own.pk]["result"] == {"ok": "customer-result"}
    assert not DETAIL_ONLY & results[theirs.pk].keys()


def test_filters_by_instance_handler_status_and_trigger(api, member, acme, instance):
    other = factories.make_instance(instance.version, acme)
    a = finished_run(instance)
    b = failed_run(instance, handler="status", trigger=Trigger.RPC)
    c = finished_run(other)
    client = api(member)

    def ids(query):
        response = client.get(f"/api/v1/runs/?{query}")
        assert response.status_code == 200
        return {r["id"] for r in response.json()["results"]}

    assert ids(f"instance={instance.pk}") == {a.pk, b.pk}
    assert ids("handler=status") == {b.pk}
    assert ids("status=succeeded") == {a.pk, c.pk}
    assert ids("trigger=rpc") == {b.pk}
    assert ids(f"instance={other.pk}&status=failed") == set()


def test_a_bad_filter_is_a_400_naming_it(api, member, instance):
    response = api(member).get("/api/v1/runs/?status=exploded")
    assert response.status_code == 400 and "status" in response.json()["error"]["fields"]


def test_order_is_stable_among_runs_created_at_the_same_moment(api, member, instance):
    runs = [finished_run(instance) for _ in range(5)]
    HandlerRun.objects.update(created_at=timezone.now())
    client = api(member)
    pages = [client.get(f"/api/v1/runs/?page_size=2&page={n}").json()["results"] for n in (1, 2, 3)]
    assert [r["id"] for page in pages for r in page] == sorted((r.pk for r in runs), reverse=True)


def test_replay_queues_a_new_run_linked_to_the_first(api, member, instance):
    run = failed_run(instance)
    response = api(member).post(f"/api/v1/runs/{run.pk}/replay/")
    assert response.status_code == 201
    body = response.json()
    new = HandlerRun.objects.get(pk=body["id"])
    assert (new.trigger, new.status, new.first_run_id, new.attempt, new.input) == ("replay", "queued", run.pk, 2,
                                                                                    {"order": "customer-input"})
    assert body["trigger"] == "replay" and body["first_run"] == run.pk and body["input"] == {"order": "customer-input"}


def test_replay_of_an_unfinished_run_is_a_409_and_queues_nothing(api, member, instance):
    run = factories.make_run(instance, status=RunStatus.RUNNING)
    response = api(member).post(f"/api/v1/runs/{run.pk}/replay/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
    assert HandlerRun.objects.count() == 1


def test_replay_on_a_disabled_instance_is_a_409_and_queues_nothing(api, member, instance):
    run = finished_run(instance)
    instance.enabled = False
    instance.save()
    response = api(member).post(f"/api/v1/runs/{run.pk}/replay/")
    assert response.status_code == 409
    assert HandlerRun.objects.count() == 1


# --- Walls --------------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["outsider", "stranger"])
def test_another_organization_gets_404_on_every_method(request, who, instance, member):
    """The publisher sees the run (support fields) but may not replay it; a stranger gets
    404 for everything, exactly as for a run that does not exist."""
    user = request.getfixturevalue(who)
    run = finished_run(instance)
    client = client_for(user)
    missing = HandlerRun.objects.order_by("-pk").first().pk + 1000
    for pk in (run.pk, missing, "abc"):
        if who == "stranger" or pk != run.pk:
            response = client.get(f"/api/v1/runs/{pk}/")
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        response = client.post(f"/api/v1/runs/{pk}/replay/")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert HandlerRun.objects.count() == 1
    if who == "stranger":
        assert client.get("/api/v1/runs/").json()["count"] == 0
        assert client.get(f"/api/v1/runs/?instance={instance.pk}").json()["count"] == 0


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_methods_runs_do_not_have_answer_405_whoever_asks(method, instance, stranger, member):
    """No leak either way: the answer does not depend on whose run it is."""
    run = finished_run(instance)
    for user in (member, stranger):
        response = getattr(client_for(user), method)(f"/api/v1/runs/{run.pk}/", {}, format="json")
        assert response.status_code == 405
    assert HandlerRun.objects.filter(pk=run.pk).exists()


def test_anonymous_gets_401(anon, instance):
    run = finished_run(instance)
    assert anon.get("/api/v1/runs/").status_code == 401
    assert anon.get(f"/api/v1/runs/{run.pk}/").status_code == 401
    assert anon.post(f"/api/v1/runs/{run.pk}/replay/").status_code == 401


def test_no_secret_config_in_any_run_answer(api, member, secret, instance):
    secret(factories.SAMPLE_CONFIG["apiKey"])
    run = finished_run(instance)
    client = api(member)
    client.get("/api/v1/runs/")
    client.get(f"/api/v1/runs/{run.pk}/")
    client.post(f"/api/v1/runs/{run.pk}/replay/")


# --- Queries --------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [3, 30])
@pytest.mark.parametrize("who", ["member", "outsider"])
def test_the_list_runs_a_constant_number_of_queries(request, who, size, instance, acme, django_assert_max_num_queries):
    user = request.getfixturevalue(who)
    base = timezone.now()
    for n in range(size):
        finished_run(instance, created_at=base - timedelta(seconds=n))
    client = client_for(user)
    # token, its last use, count, page, which runs' details show
    with django_assert_max_num_queries(5):
        response = client.get("/api/v1/runs/?page_size=200")
    assert response.json()["count"] == size
