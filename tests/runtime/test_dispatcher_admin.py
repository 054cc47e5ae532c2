"""The admin's timer list: filters, and "run now" calling the runtime (one extra run)."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from marketplace.choices import RunStatus, Trigger
from marketplace.models import HandlerRun
from marketplace.services.installs import set_instance_enabled
from runtime.models import TimerSchedule

from .helpers import install

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


def test_timer_list_with_filters(client, django_assert_max_num_queries):
    install(name="alpha")
    install(name="beta")
    url = reverse("admin:runtime_timerschedule_changelist")
    with django_assert_max_num_queries(12):  # session, user, counts, one page of rows with instances
        response = client.get(url)
    assert response.status_code == 200
    assert "every 1m" in response.content.decode()
    assert client.get(url, {"enabled__exact": "1", "kind": "cron"}).context["cl"].result_count == 0
    assert client.get(url, {"kind": "every"}).context["cl"].result_count == 2


def test_run_now_queues_one_manual_run_and_leaves_the_schedule(client):
    instance = install()
    row = instance.timer_schedules.get()
    response = client.post(
        reverse("admin:runtime_timerschedule_changelist"),
        {"action": "run_now", "_selected_action": [row.pk]},
        follow=True,
    )
    assert response.status_code == 200
    run = HandlerRun.objects.get(instance=instance)
    assert (run.handler, run.trigger, run.status) == ("tick", Trigger.MANUAL, RunStatus.QUEUED)
    assert f"#{run.pk}" in response.content.decode()
    assert TimerSchedule.objects.get(pk=row.pk).next_run_at == row.next_run_at


def test_run_now_refuses_a_disabled_instance(client):
    instance = set_instance_enabled(instance=install(), enabled=False)
    row = instance.timer_schedules.get()
    response = client.post(
        reverse("admin:runtime_timerschedule_changelist"),
        {"action": "run_now", "_selected_action": [row.pk]},
        follow=True,
    )
    assert "is disabled" in response.content.decode()
    assert not HandlerRun.objects.exists()


def test_a_publisher_sees_and_runs_only_their_own_organizations_timers(publisher, acme, globex):
    own = install(organization=acme, name="ours")
    other = install(organization=globex, name="theirs")
    client = Client()
    client.force_login(publisher)
    url = reverse("admin:runtime_timerschedule_changelist")

    listed = client.get(url).context["cl"].result_list
    assert [row.instance.name for row in listed] == ["ours"]
    other_row = other.timer_schedules.get()
    assert client.get(reverse("admin:runtime_timerschedule_change", args=[other_row.pk])).status_code == 404

    client.post(url, {"action": "run_now", "_selected_action": [own.timer_schedules.get().pk, other_row.pk]})
    assert list(HandlerRun.objects.values_list("instance__name", flat=True)) == ["ours"]
