"""``/api/v1/timers/``: the caller's organizations' instances' timers; pausing, resuming and
moving one through ``runtime.schedules.update_timer`` (the console's path)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.choices import Role
from runtime.models import TimerSchedule
from tests import factories

from .conftest import client_for


@pytest.fixture
def stranger(db):
    user = factories.make_user("ian")
    factories.add_member(user, factories.make_org("Initech"), Role.MEMBER)
    return user


@pytest.fixture
def instance(acme, globex):
    """Acme's instance (timer ``sync``, every 5m) of an integration Globex publishes."""
    return factories.make_instance(factories.make_published(factories.make_integration(globex)), acme)


@pytest.fixture
def timer(instance):
    return TimerSchedule.objects.get(instance=instance, handler="sync")


def test_members_list_their_timers_with_the_next_run(api, member, timer):
    body = api(member).get("/api/v1/timers/").json()
    assert body["count"] == 1
    item = body["results"][0]
    assert item["id"] == timer.pk and item["instance"] == timer.instance_id and item["handler"] == "sync"
    assert item["schedule"] == {"every": "5m"} and item["paused"] is False and item["enabled"] is True
    assert item["next_run_at"].replace("Z", "+00:00") == timer.next_run_at.isoformat()


def test_pausing_and_resuming_go_through_update_timer(api, member, timer):
    client = api(member)
    response = client.patch(f"/api/v1/timers/{timer.pk}/", {"paused": True}, format="json")
    assert response.status_code == 200 and response.json()["paused"] is True and response.json()["enabled"] is False
    timer.refresh_from_db()
    assert timer.paused and not timer.enabled
    response = client.patch(f"/api/v1/timers/{timer.pk}/", {"paused": False}, format="json")
    timer.refresh_from_db()
    assert response.json()["enabled"] is True and timer.enabled and timer.next_run_at > timezone.now()


def test_moving_the_next_run(api, member, timer):
    when = (timezone.now() + timedelta(hours=3)).replace(microsecond=0)
    response = api(member).patch(f"/api/v1/timers/{timer.pk}/", {"next_run_at": when.isoformat()}, format="json")
    assert response.status_code == 200
    timer.refresh_from_db()
    assert timer.next_run_at == when


@pytest.mark.parametrize("body, field", [
    ({"next_run_at": "2001-01-01T00:00:00Z"}, "next_run_at"),  # the service's rule: not in the past
    ({"next_run_at": "soon"}, "next_run_at"),
    ({"paused": "perhaps"}, "paused"),
])
def test_bad_changes_are_400s_naming_the_field_and_change_nothing(api, member, timer, body, field):
    before = TimerSchedule.objects.values().get(pk=timer.pk)
    response = api(member).patch(f"/api/v1/timers/{timer.pk}/", body, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"]
    assert TimerSchedule.objects.values().get(pk=timer.pk) == before


@pytest.mark.parametrize("who", ["outsider", "stranger"])
def test_another_organization_gets_404_on_every_method(request, who, timer):
    """Timers are the customer's alone: the integration's publisher gets 404 too."""
    client = client_for(request.getfixturevalue(who))
    before = TimerSchedule.objects.values().get(pk=timer.pk)
    for pk in (timer.pk, timer.pk + 1000, "abc"):
        assert client.get(f"/api/v1/timers/{pk}/").status_code == 404
        response = client.patch(f"/api/v1/timers/{pk}/", {"paused": True}, format="json")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/timers/").json()["count"] == 0
    assert TimerSchedule.objects.values().get(pk=timer.pk) == before


@pytest.mark.parametrize("method", ["put", "delete", "post"])
def test_methods_timers_do_not_have_answer_405(method, member, timer):
    response = getattr(client_for(member), method)(f"/api/v1/timers/{timer.pk}/", {}, format="json")
    assert response.status_code == 405
    assert TimerSchedule.objects.filter(pk=timer.pk).exists()


def test_anonymous_gets_401(anon, timer):
    assert anon.get("/api/v1/timers/").status_code == 401
    assert anon.patch(f"/api/v1/timers/{timer.pk}/", {"paused": True}, format="json").status_code == 401


def test_no_secret_config_in_timer_answers(api, member, secret, timer):
    secret(factories.SAMPLE_CONFIG["apiKey"])
    client = api(member)
    client.get("/api/v1/timers/")
    client.patch(f"/api/v1/timers/{timer.pk}/", {"paused": True}, format="json")


@pytest.mark.parametrize("size", [3, 30])
def test_the_list_runs_a_constant_number_of_queries(size, member, acme, globex, django_assert_max_num_queries):
    version = factories.make_published(factories.make_integration(globex))
    for _ in range(size):
        factories.make_instance(version, acme)
    client = client_for(member)
    # token, its last use, count, page
    with django_assert_max_num_queries(4):
        response = client.get("/api/v1/timers/?page_size=200")
    assert response.json()["count"] == size
