"""Organizations and their members: an organization made at sign-up, invitations by link,
accepting one, changing a member's role, removing a member and leaving.

The rules, held here for every front door (docs/accounts.md):
- only an organization's owners manage its members and invitations;
- an organization always keeps at least one owner. Every change to its memberships first
  locks the organization's row, then checks the caller's role, so two owners demoting
  each other at once are serialized and the second is refused;
- an invitation works once, until it expires (``JUNCTION_INVITATION_DAYS``); only a hash of
  its link's token is stored. An unknown, used or expired link is NotFound, with one
  message for all three, so a link tells nobody which it is.
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from .. import access
from ..choices import Role
from ..exceptions import Conflict, InvalidInput, NotFound
from ..models import Invitation, Membership, Organization

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from ..querysets import AnyUser

OWNERS = (Role.OWNER,)
INVITATION_NOT_FOUND = "this invitation link is not valid: it may have been used or have expired"
LAST_OWNER = "an organization keeps at least one owner: make another member owner first"


def check_organization_name(name: str) -> tuple[str, str]:
    """The name as it will be stored and the slug made from it. InvalidInput (field
    ``organization``) when it is empty, too long, has nothing to make a slug from, or when
    an organization has that name or slug already (compared without case)."""
    name = " ".join((name or "").split())
    if not name:
        raise InvalidInput("name your organization", field="organization")
    max_length = Organization._meta.get_field("name").max_length
    if len(name) > max_length:
        raise InvalidInput(f"at most {max_length} characters", field="organization")
    slug = slugify(name)
    if not slug:
        raise InvalidInput("use at least one letter or digit in the name", field="organization")
    if Organization.objects.filter(name__iexact=name).exists() or Organization.objects.filter(slug=slug).exists():
        raise InvalidInput(f"an organization named {name!r} already exists: choose another name", field="organization")
    return name, slug


@transaction.atomic
def create_organization_for_signup(*, user: AbstractBaseUser, name: str) -> Organization:
    """A new organization named ``name`` with ``user`` as its owner. InvalidInput as
    ``check_organization_name``; the unique name and slug are the backstop against a
    concurrent sign-up with the same name, refused the same way."""
    name, slug = check_organization_name(name)
    try:
        with transaction.atomic():
            organization = Organization.objects.create(name=name, slug=slug)
    except IntegrityError:
        raise InvalidInput(f"an organization named {name!r} already exists: choose another name",
                           field="organization") from None
    Membership.objects.create(user=user, organization=organization, role=Role.OWNER)
    return organization


def _check_role(role: str) -> str:
    if role not in Role.values:
        raise InvalidInput(f"choose one of: {', '.join(Role.values)}", field="role")
    return role


def _locked(organization: Organization) -> Organization:
    """Lock the organization's row: the order every membership change takes, first."""
    return Organization.objects.select_for_update().get(pk=organization.pk)


def _refuse_losing_last_owner(membership: Membership, *, field: str | None = None) -> None:
    """Called with the organization locked, before ``membership`` stops being an owner."""
    if membership.role != Role.OWNER:
        return
    others = Membership.objects.filter(organization_id=membership.organization_id, role=Role.OWNER).exclude(pk=membership.pk)
    if not others.exists():
        raise Conflict(LAST_OWNER, field=field)


def _membership_in(organization: Organization, membership_id: object) -> Membership:
    if not str(membership_id).isdigit():
        raise NotFound(f"no member {membership_id} in {organization}")
    membership = (
        Membership.objects.select_for_update().select_related("user")
        .filter(organization=organization, pk=int(str(membership_id))).first()
    )
    if membership is None:
        raise NotFound(f"no member {membership_id} in {organization}")
    return membership


@transaction.atomic
def invite_member(*, organization: Organization, role: str = Role.MEMBER, user: AnyUser) -> tuple[Invitation, str]:
    """An invitation to join ``organization`` as ``role`` and the token of its link, which
    is not stored and cannot be shown again. Owners only (PermissionDenied)."""
    access.require_role(user, organization, OWNERS)
    role = _check_role(role)
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization=organization, role=role, digest=Invitation.digest_of(token),
        created_by=user if user is not None and user.is_authenticated else None,
        expires_at=timezone.now() + timedelta(days=settings.JUNCTION_INVITATION_DAYS),
    )
    return invitation, token


def find_invitation(token: str) -> Invitation:
    """The pending invitation a link's token opens, with its organization; NotFound
    (one message) for an unknown, used or expired one."""
    invitation = (
        Invitation.objects.pending().select_related("organization")
        .filter(digest=Invitation.digest_of(token or "")).first()
    )
    if invitation is None:
        raise NotFound(INVITATION_NOT_FOUND)
    return invitation


@transaction.atomic
def accept_invitation(*, token: str, user: AbstractBaseUser) -> Membership:
    """``user`` joins the invitation's organization with its role; the invitation is used
    up. NotFound as ``find_invitation`` (two people accepting one link at once: the row
    lock lets one through, the other finds it used); Conflict, leaving the invitation
    unused, when ``user`` already belongs to the organization."""
    invitation = find_invitation(token)
    _locked(invitation.organization)
    invitation = (
        Invitation.objects.pending().select_for_update().select_related("organization")
        .filter(pk=invitation.pk).first()
    )
    if invitation is None:
        raise NotFound(INVITATION_NOT_FOUND)
    organization = invitation.organization
    if Membership.objects.filter(organization=organization, user=user).exists():
        raise Conflict(f"you already belong to {organization}")
    try:
        with transaction.atomic():
            membership = Membership.objects.create(user=user, organization=organization, role=invitation.role)
    except IntegrityError:
        raise Conflict(f"you already belong to {organization}") from None
    invitation.accepted_by = user
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_by", "accepted_at"])
    return membership


@transaction.atomic
def revoke_invitation(*, organization: Organization, invitation_id: object, user: AnyUser) -> None:
    """Delete a pending invitation of ``organization``, so its link stops working. Owners
    only; NotFound for another organization's or an already used one."""
    access.require_role(user, organization, OWNERS)
    pending = Invitation.objects.pending().filter(organization=organization)
    deleted, _ = pending.filter(pk=int(str(invitation_id))).delete() if str(invitation_id).isdigit() else (0, None)
    if not deleted:
        raise NotFound(f"no pending invitation {invitation_id} in {organization}")


@transaction.atomic
def change_role(*, organization: Organization, membership_id: object, role: str, user: AnyUser) -> Membership:
    """Give a member of ``organization`` another role. Owners only; Conflict when it would
    leave the organization without an owner."""
    role = _check_role(role)
    organization = _locked(organization)
    access.require_role(user, organization, OWNERS)  # after the lock: a demotion just committed counts
    membership = _membership_in(organization, membership_id)
    if role != membership.role:
        if role != Role.OWNER:
            _refuse_losing_last_owner(membership, field="role")
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def remove_member(*, organization: Organization, membership_id: object, user: AnyUser) -> Membership:
    """Take a member out of ``organization`` (their own organizations and tokens stay).
    Owners only; Conflict when they are its last owner. Returns the deleted membership."""
    organization = _locked(organization)
    access.require_role(user, organization, OWNERS)
    membership = _membership_in(organization, membership_id)
    _refuse_losing_last_owner(membership)
    membership.delete()
    return membership


@transaction.atomic
def leave_organization(*, organization: Organization, user: AbstractBaseUser) -> None:
    """``user`` leaves ``organization``. NotFound when not a member; Conflict for its last owner."""
    organization = _locked(organization)
    membership = Membership.objects.select_for_update().filter(organization=organization, user=user).first()
    if membership is None:
        raise NotFound(f"you are not a member of {organization}")
    _refuse_losing_last_owner(membership)
    membership.delete()
