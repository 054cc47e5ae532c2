"""Pausing one timer and moving its next run by hand (runtime.schedules.update_timer), from
the service and from the console's change form."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from marketplace.exceptions import InvalidInput, PermissionDenied
from marketplace.models import HandlerRun
from marketplace.services.installs import set_instance_enabled
from runtime.dispatcher import dispatch_due
from runtime.models import TimerSchedule
from runtime.schedules import update_timer

from .helpers import install

pytestmark = pytest.mark.django_db


def test_a_paused_timer_is_not_dispatched_and_resumes_without_catching_up():
    instance = install()
    row = instance.timer_schedules.get()
    update_timer(schedule=row, paused=True)
    assert not TimerSchedule.objects.get(pk=row.pk).enabled

    later = row.next_run_at + timedelta(minutes=10)
    assert dispatch_due(now=later, send=lambda ids: None).claimed == 0
    assert not HandlerRun.objects.exists()

    resumed = update_timer(schedule=row, paused=False, now=later)
    assert resumed.enabled and not resumed.paused
    assert later < resumed.next_run_at <= later + timedelta(minutes=1)


def test_a_paused_timer_stays_paused_through_disable_and_enable_of_its_instance():
    instance = install()
    update_timer(schedule=instance.timer_schedules.get(), paused=True)
    set_instance_enabled(instance=instance, enabled=False)
    set_instance_enabled(instance=instance, enabled=True)
    row = instance.timer_schedules.get()
    assert row.paused and not row.enabled


def test_pausing_a_disabled_instances_timer_then_resuming_keeps_it_off():
    instance = set_instance_enabled(instance=install(), enabled=False)
    row = update_timer(schedule=instance.timer_schedules.get(), paused=False)
    assert not row.enabled


def test_the_next_run_can_be_moved_but_not_into_the_past():
    row = install().timer_schedules.get()
    soon = timezone.now() + timedelta(seconds=30)
    assert update_timer(schedule=row, next_run_at=soon).next_run_at == soon
    with pytest.raises(InvalidInput) as exc:
        update_timer(schedule=row, next_run_at=timezone.now() - timedelta(hours=1))
    assert exc.value.errors == {"next_run_at": ["the next run cannot be in the past"]}


def test_only_the_instances_organization_may_edit_its_timers(outsider):
    row = install().timer_schedules.get()
    with pytest.raises(PermissionDenied):
        update_timer(schedule=row, paused=True, user=outsider)
    assert not TimerSchedule.objects.get(pk=row.pk).paused


def test_the_console_pauses_a_timer_and_shows_a_past_next_run_on_its_field(publisher, acme):
    row = install(organization=acme).timer_schedules.get()
    client = Client()
    client.force_login(publisher)
    url = reverse("admin:runtime_timerschedule_change", args=[row.pk])
    local = timezone.localtime(row.next_run_at)

    response = client.post(url, {"paused": "on", "next_run_at_0": local.date().isoformat(),
                                 "next_run_at_1": local.time().strftime("%H:%M:%S")})
    assert response.status_code == 302
    assert TimerSchedule.objects.get(pk=row.pk).paused

    past = timezone.localtime(timezone.now() - timedelta(days=1))
    response = client.post(url, {"paused": "on", "next_run_at_0": past.date().isoformat(),
                                 "next_run_at_1": past.time().strftime("%H:%M:%S")})
    assert response.status_code == 200
    assert "the next run cannot be in the past" in response.content.decode()
    assert TimerSchedule.objects.get(pk=row.pk).next_run_at == row.next_run_at
