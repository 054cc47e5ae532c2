"""Who may do what. Roles come from Membership: owners and publishers change an
organization's integrations; any member installs and runs them, and sees its instances'
data. docs/access.md tells the whole story."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from .exceptions import InvalidInput, NotFound, PermissionDenied
from .models import Device, HandlerRun, Instance, Integration, IntegrationVersion, Membership, Organization
from .querysets import ALL_ROLES, PUBLISHING_ROLES

if TYPE_CHECKING:
    from .querysets import AnyUser


def organizations_of(user: AnyUser, roles: Iterable[str] = ALL_ROLES) -> QuerySet:
    """The organizations where ``user`` holds one of ``roles`` (all of them for superusers)."""
    if not user or not user.is_authenticated:
        return Organization.objects.none()
    if user.is_superuser:
        return Organization.objects.all()
    return Organization.objects.filter(memberships__user=user, memberships__role__in=roles).distinct()


def get_organization_for(user: AnyUser, slug: str | None, roles: Iterable[str] = ALL_ROLES,
                         *, field: str = "organization") -> Organization:
    """The organization a write names by ``slug``, among those where ``user`` holds one of
    ``roles``; another organization is NotFound like a missing one. Without a slug, the
    user's only such organization (a user in several must name one)."""
    mine = organizations_of(user, roles).order_by("pk")
    if slug:
        return _get(mine, "organization", slug, slug=slug)
    first_two = list(mine[:2])
    if len(first_two) == 1:
        return first_two[0]
    if not first_two:
        wanted = " or ".join(str(r) for r in roles)
        raise PermissionDenied(f"you need the {wanted} role in an organization for this")
    raise InvalidInput("you belong to several organizations: name one by its slug", field=field)


def has_role(user: AnyUser, organization: Organization, roles: Iterable[str] = ALL_ROLES) -> bool:
    if user is None or not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user=user, organization=organization, role__in=roles).exists()


def require_role(user: AnyUser, organization: Organization, roles: Iterable[str] = ALL_ROLES) -> None:
    """Raise PermissionDenied unless ``user`` holds one of ``roles`` in ``organization``.
    ``user=None`` means a trusted caller (management commands, tasks) and is allowed."""
    if user is None:
        return
    if not has_role(user, organization, roles):
        wanted = " or ".join(str(r) for r in roles)
        raise PermissionDenied(f"you need the {wanted} role in {organization} for this")


def require_can_publish(user: AnyUser, integration: Integration) -> None:
    require_role(user, integration.owner, PUBLISHING_ROLES)


def require_visible(user: AnyUser, integration: Integration) -> None:
    if user is None:
        return
    if not Integration.objects.visible_to(user).filter(pk=integration.pk).exists():
        raise PermissionDenied(f"integration {integration.slug} is not visible to you")


# --- What a publisher sees of its customers' instances and runs ----------------------------
# An integration's publisher sees every instance of it and their runs, to support its
# customers, but only as these fields: what ran, when, for how long and how it ended. Never
# what the customer's data can reach: config, bound devices (URLs, DSNs, credentials), the
# instance's last error, a run's input, result, logs and error message or file (a handler may
# log ctx.config; an error may quote a device's answer, auth headers and all).
INSTANCE_SUPPORT_FIELDS = ("name", "organization", "version", "enabled", "state", "installed_at", "last_run_at")
RUN_SUPPORT_FIELDS = (
    "instance", "handler", "trigger", "status", "attempt", "first_run", "starts", "created_at", "started_at",
    "finished_at", "duration_ms", "error_code",
)


def sees_instance_data(user: AnyUser, instance: Instance) -> bool:
    """Whether ``user`` sees everything of ``instance`` and its runs: members of the
    instance's organization (any role) do, and superusers, who run the platform and hold
    its keys. Anyone else who may see the instance at all (its integration's publisher)
    gets ``INSTANCE_SUPPORT_FIELDS`` and ``RUN_SUPPORT_FIELDS`` only."""
    return has_role(user, instance.organization)


def sees_run_details(user: AnyUser, run: HandlerRun) -> bool:
    """``sees_instance_data`` for the run's instance: a run's details are its instance's data."""
    return sees_instance_data(user, run.instance)


def runs_with_details_for(user: AnyUser, runs: QuerySet) -> QuerySet:
    """``runs`` narrowed to those whose details ``user`` sees, for searching inside them."""
    return runs.with_details_for(user)


# --- Fetch and check in one call ------------------------------------------------------------
# The object a request names is fetched through these (today by the marketplace's
# integration page and the device services; the REST API, issue 11, is to): another
# organization's object raises NotFound exactly like a missing one. ``write=True``
# asks for what the user may change, which for an instance or a run is narrower than what
# they see (an integration's publisher sees its customers' instances, changes none).
# ``user=None`` is a trusted caller (management commands, tasks), as for ``require_role``.


def _get(queryset: QuerySet, what: str, key: object, **lookup: Any) -> Any:
    try:
        return queryset.get(**lookup)
    except (queryset.model.DoesNotExist, ValueError, TypeError, ValidationError):
        raise NotFound(f"no {what} {key} among those you may reach") from None


def _scope(queryset: QuerySet, user: AnyUser, write: bool) -> QuerySet:
    if user is None:
        return queryset.all()
    return queryset.changeable_by(user) if write else queryset.visible_to(user)


def get_integration_for(user: AnyUser, slug: str, *, write: bool = False) -> Integration:
    """The integration ``slug``: one the user sees (public or their organization's), or
    with ``write`` one they publish for."""
    integrations = Integration.objects.select_related("owner", "category")
    if user is not None:
        integrations = integrations.editable_by(user) if write else integrations.visible_to(user)
    return _get(integrations, "integration", slug, slug=slug)


def get_integration_to_publish(user: AnyUser, slug: str) -> Integration:
    """The integration ``slug`` for its publishing work: the draft, validating and publishing
    it. Those are private to the owning organization even when the integration is public,
    so anyone outside it gets NotFound like for a missing integration; a member of it
    without a publishing role gets PermissionDenied (they know the integration)."""
    integration = get_integration_for(user, slug)
    if user is not None and not has_role(user, integration.owner):
        raise NotFound(f"no integration {slug} among those you publish for")
    require_can_publish(user, integration)
    return integration


def get_version_for(user: AnyUser, slug: str, number: int, *, write: bool = False) -> IntegrationVersion:
    """Published version ``number`` of integration ``slug`` as the user sees it; with
    ``write``, of an integration they publish for."""
    versions = _scope(IntegrationVersion.objects.select_related("integration__owner"), user, write)
    return _get(versions, "version", f"{slug} v{number}", integration__slug=slug, number=number)


def get_instance_for(user: AnyUser, pk: object, *, write: bool = False) -> Instance:
    instances = _scope(Instance.objects.select_related("organization", "version__integration__owner"), user, write)
    return _get(instances, "instance", pk, pk=pk)


def get_device_for(user: AnyUser, pk: object, *, write: bool = False) -> Device:
    return _get(_scope(Device.objects.select_related("organization"), user, write), "device", pk, pk=pk)


def get_run_for(user: AnyUser, pk: object, *, write: bool = False) -> HandlerRun:
    """A run as the user may see it (``sees_run_details`` says whether its details show);
    with ``write`` (delete, replay), one of their own organization's instances."""
    runs = _scope(HandlerRun.objects.select_related("instance__organization", "instance__version__integration"),
                  user, write)
    return _get(runs, "run", pk, pk=pk)
