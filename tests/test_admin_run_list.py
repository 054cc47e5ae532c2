"""The console's run list at scale (docs/operations.md): its queries do not grow with the
rows shown, its organization filter is read from the instances the user sees, and its
count is exact up to a cap. Timings are in bench/bench_history.py, not here."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from marketplace.choices import RunStatus
from marketplace.models import HandlerRun
from runtime.admin import EstimatedCountPaginator

from . import factories
from .runtime.helpers import install, make_runtime_version, timer

pytestmark = pytest.mark.django_db

URL = reverse("admin:marketplace_handlerrun_changelist")


def console(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def queries_of_the_list(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(URL).status_code == 200
    return len(queries.captured_queries)


def test_the_run_list_takes_as_many_queries_for_30_runs_as_for_3(publisher, acme):
    instances = [install(organization=acme, name=f"site {i}") for i in range(3)]
    for instance in instances:
        factories.make_run(instance, status=RunStatus.SUCCEEDED)
    client = console(publisher)
    few = queries_of_the_list(client)
    for instance in instances:
        for _ in range(9):
            factories.make_run(instance, status=RunStatus.SUCCEEDED)

    assert queries_of_the_list(client) == few


def test_the_organization_filter_lists_the_organizations_whose_instances_the_user_sees(publisher, acme, globex):
    ours = make_runtime_version({"tick": timer()}, integration=factories.make_integration(acme))
    factories.make_run(install(version=ours, organization=acme), status=RunStatus.SUCCEEDED)
    install(version=ours, organization=globex)  # a customer of Acme's integration, no run yet
    initech = factories.make_org("Initech")
    factories.make_run(install(organization=initech), status=RunStatus.SUCCEEDED)  # not Acme's integration

    page = console(publisher).get(URL).content.decode()

    assert f"instance__organization__id__exact={acme.pk}" in page
    assert f"instance__organization__id__exact={globex.pk}" in page
    assert f"instance__organization__id__exact={initech.pk}" not in page
    assert "Initech" not in page


class SmallCap(EstimatedCountPaginator):
    exact_up_to = 3


def test_the_count_is_exact_up_to_the_cap_and_never_below_what_it_counted(acme):
    instance = install(organization=acme)
    for _ in range(3):
        factories.make_run(instance)
    assert SmallCap(HandlerRun.objects.order_by("-created_at"), 2).count == 3

    for _ in range(3):
        factories.make_run(instance)
    count = SmallCap(HandlerRun.objects.order_by("-created_at"), 2).count
    if connection.vendor == "postgresql":
        assert count >= 4  # the planner's estimate, never less than the rows it counted
    else:
        assert count == 6
