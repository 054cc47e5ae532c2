"""Who may do what. Roles come from Membership: owners and publishers change an
organization's integrations; any member installs and runs them."""
from __future__ import annotations

from .choices import Role
from .exceptions import PermissionDenied
from .models import Integration, Membership, Organization

PUBLISHING_ROLES = (Role.OWNER, Role.PUBLISHER)
ALL_ROLES = tuple(Role.values)


def organizations_of(user, roles=ALL_ROLES):
    """The organizations where ``user`` holds one of ``roles`` (all of them for superusers)."""
    if not user or not user.is_authenticated:
        return Organization.objects.none()
    if user.is_superuser:
        return Organization.objects.all()
    return Organization.objects.filter(memberships__user=user, memberships__role__in=roles).distinct()


def has_role(user, organization: Organization, roles=ALL_ROLES) -> bool:
    if user is None or not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user=user, organization=organization, role__in=roles).exists()


def require_role(user, organization: Organization, roles=ALL_ROLES) -> None:
    """Raise PermissionDenied unless ``user`` holds one of ``roles`` in ``organization``.
    ``user=None`` means a trusted caller (management commands, tasks) and is allowed."""
    if user is None:
        return
    if not has_role(user, organization, roles):
        wanted = " or ".join(str(r) for r in roles)
        raise PermissionDenied(f"you need the {wanted} role in {organization} for this")


def require_can_publish(user, integration: Integration) -> None:
    require_role(user, integration.owner, PUBLISHING_ROLES)


def require_visible(user, integration: Integration) -> None:
    if user is None:
        return
    if not Integration.objects.visible_to(user).filter(pk=integration.pk).exists():
        raise PermissionDenied(f"integration {integration.slug} is not visible to you")
