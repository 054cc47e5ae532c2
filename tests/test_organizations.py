"""Organizations and their members (services/organizations.py): sign-up's organization,
invitations by link, roles, removing and leaving. Personas: Acme's owner (olga), its
publisher (alice) and member (mike); Globex's publisher (oscar) is the outsider."""
from __future__ import annotations

import hashlib
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.choices import Role
from marketplace.exceptions import Conflict, InvalidInput, NotFound, PermissionDenied
from marketplace.models import Invitation, Membership, Organization
from marketplace.services.organizations import (
    INVITATION_NOT_FOUND,
    accept_invitation,
    change_role,
    create_organization_for_signup,
    invite_member,
    leave_organization,
    remove_member,
    revoke_invitation,
)

from . import factories
from .conftest import requires_postgres


@pytest.fixture
def owner(acme):
    user = factories.make_user("olga")
    factories.add_member(user, acme, Role.OWNER)
    return user


def membership_of(user, organization) -> Membership:
    return Membership.objects.get(user=user, organization=organization)


# --- Sign-up's organization -----------------------------------------------------------------

def test_signup_makes_the_user_owner_of_a_new_organization(db):
    user = factories.make_user("nina")

    organization = create_organization_for_signup(user=user, name="  Nina's   Widgets ")

    assert (organization.name, organization.slug) == ("Nina's Widgets", "ninas-widgets")
    assert list(organization.memberships.values_list("user__username", "role")) == [("nina", Role.OWNER)]


@pytest.mark.parametrize("name", ["acme", "ACME", "Acme"])
def test_a_taken_organization_name_is_refused_whatever_its_case(acme, name):
    acme.slug = "acme"
    acme.save()
    user = factories.make_user()

    with pytest.raises(InvalidInput) as refused:
        create_organization_for_signup(user=user, name=name)

    assert "already exists" in refused.value.errors["organization"][0]
    assert Organization.objects.count() == 1
    assert not Membership.objects.filter(user=user).exists()


def test_a_name_whose_slug_is_taken_is_refused(db):
    create_organization_for_signup(user=factories.make_user(), name="Acme Inc")

    with pytest.raises(InvalidInput) as refused:
        create_organization_for_signup(user=factories.make_user(), name="Acme, Inc.")

    assert list(refused.value.errors) == ["organization"]


@pytest.mark.parametrize("name, message", [("   ", "name your organization"), ("!!!", "letter or digit"),
                                           ("x" * 121, "at most 120")])
def test_an_unusable_organization_name_is_refused(db, name, message):
    with pytest.raises(InvalidInput) as refused:
        create_organization_for_signup(user=factories.make_user(), name=name)

    assert message in refused.value.errors["organization"][0]


# --- Invitations --------------------------------------------------------------------------------

def test_an_owner_invites_and_only_a_hash_of_the_link_is_stored(acme, owner, settings):
    settings.JUNCTION_INVITATION_DAYS = 3

    invitation, token = invite_member(organization=acme, role=Role.PUBLISHER, user=owner)

    invitation.refresh_from_db()
    assert invitation.role == Role.PUBLISHER and invitation.created_by == owner
    assert invitation.digest == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {invitation.digest, str(invitation.pk)}
    assert len(token) >= 40
    expected = timezone.now() + timedelta(days=3)
    assert abs((invitation.expires_at - expected).total_seconds()) < 60


@pytest.mark.parametrize("persona", ["publisher", "member", "outsider"])
def test_only_owners_invite(acme, persona, request):
    user = request.getfixturevalue(persona)

    with pytest.raises(PermissionDenied):
        invite_member(organization=acme, role=Role.MEMBER, user=user)

    assert not Invitation.objects.exists()


def test_an_invitation_names_a_known_role(acme, owner):
    with pytest.raises(InvalidInput) as refused:
        invite_member(organization=acme, role="admin", user=owner)

    assert list(refused.value.errors) == ["role"]


def test_accepting_joins_with_the_invited_role_once(acme, owner):
    invitation, token = invite_member(organization=acme, role=Role.PUBLISHER, user=owner)
    colleague, latecomer = factories.make_user("carla"), factories.make_user("lou")

    membership = accept_invitation(token=token, user=colleague)

    assert (membership.organization, membership.role) == (acme, Role.PUBLISHER)
    invitation.refresh_from_db()
    assert invitation.accepted_by == colleague and invitation.accepted_at is not None
    with pytest.raises(NotFound) as refused:
        accept_invitation(token=token, user=latecomer)
    assert refused.value.message == INVITATION_NOT_FOUND
    assert not Membership.objects.filter(user=latecomer).exists()


def test_used_expired_and_unknown_links_are_refused_alike(acme, owner):
    _, used = invite_member(organization=acme, user=owner)
    accept_invitation(token=used, user=factories.make_user())
    expired_invitation, expired = invite_member(organization=acme, user=owner)
    Invitation.objects.filter(pk=expired_invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _, valid = invite_member(organization=acme, user=owner)
    user = factories.make_user()

    messages = set()
    for token in (used, expired, valid[:-1] + ("A" if valid[-1] != "A" else "B"), ""):
        with pytest.raises(NotFound) as refused:
            accept_invitation(token=token, user=user)
        messages.add(refused.value.message)

    assert messages == {INVITATION_NOT_FOUND}
    assert not Membership.objects.filter(user=user).exists()


def test_a_member_accepting_again_is_told_and_the_link_stays_usable(acme, owner, member):
    invitation, token = invite_member(organization=acme, role=Role.OWNER, user=owner)

    with pytest.raises(Conflict, match="already belong"):
        accept_invitation(token=token, user=member)

    assert membership_of(member, acme).role == Role.MEMBER
    assert Invitation.objects.pending().filter(pk=invitation.pk).exists()


def test_a_revoked_invitation_no_longer_opens(acme, globex, owner):
    invitation, token = invite_member(organization=acme, user=owner)
    globex_owner = factories.make_user()
    factories.add_member(globex_owner, globex, Role.OWNER)

    with pytest.raises(NotFound):  # another organization's invitation, as a missing one
        revoke_invitation(organization=globex, invitation_id=invitation.pk, user=globex_owner)
    revoke_invitation(organization=acme, invitation_id=invitation.pk, user=owner)

    with pytest.raises(NotFound):
        accept_invitation(token=token, user=factories.make_user())


# --- Roles, removing, leaving -------------------------------------------------------------------

def test_an_owner_changes_a_members_role(acme, owner, member):
    membership = change_role(organization=acme, membership_id=membership_of(member, acme).pk,
                             role=Role.PUBLISHER, user=owner)

    assert membership.role == Role.PUBLISHER
    assert membership_of(member, acme).role == Role.PUBLISHER


@pytest.mark.parametrize("persona", ["publisher", "member", "outsider"])
def test_only_owners_change_roles(acme, owner, member, persona, request):
    user = request.getfixturevalue(persona)

    with pytest.raises(PermissionDenied):
        change_role(organization=acme, membership_id=membership_of(owner, acme).pk, role=Role.MEMBER, user=user)

    assert membership_of(owner, acme).role == Role.OWNER


def test_the_last_owner_cannot_step_down_but_one_of_two_can(acme, owner):
    with pytest.raises(Conflict, match="at least one owner") as refused:
        change_role(organization=acme, membership_id=membership_of(owner, acme).pk, role=Role.MEMBER, user=owner)
    assert list(refused.value.errors) == ["role"]

    second = factories.make_user("otto")
    factories.add_member(second, acme, Role.OWNER)
    change_role(organization=acme, membership_id=membership_of(owner, acme).pk, role=Role.MEMBER, user=owner)

    assert membership_of(owner, acme).role == Role.MEMBER


def test_another_organizations_membership_is_not_found(acme, globex, owner, outsider):
    with pytest.raises(NotFound):
        change_role(organization=acme, membership_id=membership_of(outsider, globex).pk, role=Role.MEMBER, user=owner)
    with pytest.raises(NotFound):
        remove_member(organization=acme, membership_id=membership_of(outsider, globex).pk, user=owner)

    assert membership_of(outsider, globex).role == Role.PUBLISHER


def test_an_owner_removes_a_member(acme, owner, member):
    remove_member(organization=acme, membership_id=membership_of(member, acme).pk, user=owner)

    assert not Membership.objects.filter(user=member).exists()


def test_only_owners_remove_members(acme, owner, publisher, member):
    with pytest.raises(PermissionDenied):
        remove_member(organization=acme, membership_id=membership_of(member, acme).pk, user=publisher)

    assert Membership.objects.filter(user=member, organization=acme).exists()


def test_the_last_owner_cannot_be_removed(acme, owner):
    with pytest.raises(Conflict, match="at least one owner"):
        remove_member(organization=acme, membership_id=membership_of(owner, acme).pk, user=owner)

    assert membership_of(owner, acme).role == Role.OWNER


def test_members_leave_but_the_last_owner_stays(acme, owner, member, outsider):
    leave_organization(organization=acme, user=member)
    assert not Membership.objects.filter(user=member).exists()

    with pytest.raises(Conflict, match="at least one owner"):
        leave_organization(organization=acme, user=owner)
    with pytest.raises(NotFound):
        leave_organization(organization=acme, user=outsider)

    assert membership_of(owner, acme).role == Role.OWNER


@requires_postgres
@pytest.mark.postgres
@pytest.mark.parametrize("attempt", range(3))
def test_two_owners_demoting_each_other_at_once_leave_one_owner(transactional_db, attempt):
    organization = factories.make_org()
    first, second = factories.make_user(), factories.make_user()
    memberships = [factories.add_member(user, organization, Role.OWNER) for user in (first, second)]
    barrier = threading.Barrier(2)

    def demote(actor, membership):
        def run():
            barrier.wait(timeout=10)
            return change_role(organization=organization, membership_id=membership.pk, role=Role.MEMBER, user=actor)
        return run

    # Each owner demotes the other: without the organization lock both would see one other owner.
    results = factories.in_threads(demote(first, memberships[1]), demote(second, memberships[0]))

    # The second to take the lock is no longer an owner (PermissionDenied), or would leave
    # none (Conflict) had its role been read before the first committed.
    demoted = [r for r in results if isinstance(r, Membership)]
    refused = [r for r in results if isinstance(r, PermissionDenied | Conflict)]
    assert len(demoted) == 1 and len(refused) == 1, results
    assert Membership.objects.filter(organization=organization, role=Role.OWNER).count() == 1
