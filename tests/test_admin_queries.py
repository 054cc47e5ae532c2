"""Every list in the console runs a constant number of queries, whatever its length: each
list is loaded with 10 rows and with 30, and both pages take the same queries, no more
than pinned here. A row's label must come from the list's own query (``for_listing``):
``Instance.__str__`` names its version, whose ``__str__`` names its integration."""
from __future__ import annotations

import itertools

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from marketplace.choices import Role
from marketplace.models import ApiEndpoint, ApiField, ApiModel, ApiSchema

from . import factories

_keys = itertools.count()


@pytest.fixture
def instances(acme, globex):
    """Three instances of three of Acme's integrations: two Acme's own, one Globex's (a
    customer, whose instance and runs Acme's publisher sees)."""
    rows = []
    for n, org in enumerate((acme, acme, globex)):
        version = factories.make_published(factories.make_integration(acme, name=f"Integration {n}"))
        rows.append(factories.make_instance(version, org, name=f"Instance {n}"))
    return rows


# A publisher lists its customers' instances and runs; of the rest, its own organization's only.
SEEN_BY_THE_PUBLISHER = {"handlerrun", "instance"}


def add_rows(model: str, instances, count: int) -> None:
    """``count`` more rows of ``model``, spread over the instances Acme's publisher lists."""
    from runtime.models import SeenItem, TimerSchedule

    if model not in SEEN_BY_THE_PUBLISHER:
        instances = instances[:2]
    for n, instance in zip(range(count), itertools.cycle(instances)):
        key = f"k{next(_keys)}"
        if model == "handlerrun":
            factories.make_run(instance, handler=key)
        elif model == "containerentry":
            factories.make_container_entry(instance, key=key)
        elif model == "cacheentry":
            factories.make_cache_entry(instance if n % 2 else None, organization=instance.organization, key=key)
        elif model == "seenitem":
            SeenItem.objects.create(instance=instance, handler="poll", item_id=key, seen_at=timezone.now())
        elif model == "timerschedule":
            TimerSchedule.objects.create(instance=instance, handler=key, every_seconds=60, next_run_at=timezone.now())
        elif model == "instance":
            factories.make_instance(instance.version, instance.organization, name=key)
        elif model == "device":
            factories.make_device(instance.organization, name=key)
        elif model == "integration":
            factories.make_published(factories.make_integration(instance.version.integration.owner, name=key))
        elif model == "integrationversion":
            factories.make_published(instance.version.integration)
        elif model == "attachment":
            factories.make_attachment(instance.version.integration, title=key)
        elif model == "apischema":
            factories.make_api_schema(instance.version.integration, name=f"{key}.json")
        elif model == "apiendpoint":
            schema = ApiSchema.objects.filter(integration=instance.version.integration).first() \
                or factories.make_api_schema(instance.version.integration)
            ApiEndpoint.objects.create(schema=schema, method="GET", path=f"/{key}")
        elif model == "apimodel":
            schema = ApiSchema.objects.filter(integration=instance.version.integration).first() \
                or factories.make_api_schema(instance.version.integration)
            ApiField.objects.create(model=ApiModel.objects.create(schema=schema, name=key), name="id", type="integer")
        elif model == "organization":
            for user in User.objects.filter(username__in=["alice", "root"]):
                factories.add_member(user, factories.make_org(key), Role.PUBLISHER)


def list_queries(client, app: str, model: str) -> tuple[int, int]:
    """Queries and rows of one load of the list."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(f"admin:{app}_{model}_changelist"))
    assert response.status_code == 200
    return len(queries), len(response.context["cl"].result_list)


# The list, and the most queries its page may take for a publisher (a superuser's take
# three fewer). The runs list's 11, for instance: session, user, the user's publishing
# organizations (may they use the console?), the organization filter's choices, the
# filtered and the total count, the user's model permissions (two: the actions ask), the
# rows with instance, version and integration joined, and the date hierarchy (two).
LISTS = [
    ("marketplace", "handlerrun", 11),
    ("marketplace", "containerentry", 10),
    ("marketplace", "cacheentry", 9),
    ("runtime", "seenitem", 9),
    ("runtime", "timerschedule", 12),
    ("marketplace", "instance", 11),
    ("marketplace", "device", 9),
    ("marketplace", "integration", 10),
    ("marketplace", "integrationversion", 10),
    ("marketplace", "attachment", 11),
    ("marketplace", "apischema", 10),
    ("marketplace", "apiendpoint", 10),
    ("marketplace", "apimodel", 10),
    ("marketplace", "organization", 8),
]


@pytest.mark.parametrize("persona", ["publisher", "admin_user"])
@pytest.mark.parametrize("app, model, pinned", LISTS, ids=[m for _, m, _ in LISTS])
def test_a_list_takes_the_same_queries_for_10_rows_as_for_30(request, client, instances, persona, app, model, pinned):
    user = request.getfixturevalue(persona)
    client.force_login(user)
    add_rows(model, instances, 10)
    client.get(reverse(f"admin:{app}_{model}_changelist"))  # warm: content types, sessions
    few, shown = list_queries(client, app, model)
    assert shown >= 10
    add_rows(model, instances, 20)
    many, shown_more = list_queries(client, app, model)
    assert shown_more == shown + 20
    print(f"{model} as {persona}: {few} queries for {shown} rows, {many} for {shown_more}")
    assert many == few <= pinned
