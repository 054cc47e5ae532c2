"""The account pages through Django's test client: sign-up (alone and through an
invitation), login by e-mail, password reset, the navigation, the profile's API tokens and
the organization page, with the tenant wall (another organization is a 404)."""
from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core import mail
from django.template.loader import render_to_string
from django.urls import reverse

from marketplace.choices import Role
from marketplace.models import ApiToken, Invitation, Membership, Organization
from marketplace.services.organizations import invite_member
from marketplace.services.tokens import create_api_token, user_for_token

from . import factories

User = get_user_model()
PASSWORD = "a-Long-pass-phrase-42"


def signup_data(**overrides) -> dict:
    data = {"organization": "Nina Widgets", "username": "nina", "email": "nina@example.com",
            "password1": PASSWORD, "password2": PASSWORD}
    data.update(overrides)
    return data


@pytest.fixture
def owner(acme):
    user = factories.make_user("olga")
    factories.add_member(user, acme, Role.OWNER)
    return user


def organization_url(organization: Organization) -> str:
    return reverse("marketplace:organization", args=[organization.slug])


# --- Sign-up, login, logout, password reset ----------------------------------------------------

def test_signup_creates_the_user_and_their_organization_and_logs_in(client, db):
    response = client.post(reverse("account_signup"), signup_data())

    organization = Organization.objects.get(name="Nina Widgets")
    assert response.status_code == 302
    assert response.url == reverse("marketplace:my-organization")
    assert client.get(response.url).url == organization_url(organization)
    page = client.get(organization_url(organization))
    assert page.status_code == 200
    assert page.context["user"].username == "nina"
    assert list(organization.memberships.values_list("user__username", "role")) == [("nina", Role.OWNER)]


def test_signup_asks_for_the_organization_first_with_a_label(client, db):
    html = client.get(reverse("account_signup")).content.decode()

    assert '<label for="id_organization">Organization name' in html
    assert html.index('id="id_organization"') < html.index('id="id_username"')


def test_a_taken_organization_name_is_a_form_error_and_creates_nobody(client, acme):
    response = client.post(reverse("account_signup"), signup_data(organization=acme.name.upper()))

    assert response.status_code == 200
    assert "already exists: choose another name" in response.context["form"].errors["organization"][0]
    assert not User.objects.filter(username="nina").exists()


def test_login_by_email_and_logout_by_post(client, member):
    response = client.post(reverse("account_login"), {"login": member.email, "password": "pw-123456"})
    assert response.status_code == 302
    assert client.get(reverse("marketplace:profile")).status_code == 200

    assert client.get(reverse("account_logout")).status_code == 200  # a confirmation page: GET does not log out
    assert client.get(reverse("marketplace:profile")).status_code == 200
    client.post(reverse("account_logout"))
    assert client.get(reverse("marketplace:profile")).status_code == 302


def test_password_reset_mails_a_link_that_sets_a_new_password(client, member):
    client.post(reverse("account_reset_password"), {"email": member.email})

    assert len(mail.outbox) == 1 and mail.outbox[0].to == [member.email]
    link = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/\S+)", mail.outbox[0].body).group(1)
    form_page = client.get(link, follow=True)
    client.post(form_page.redirect_chain[-1][0] if form_page.redirect_chain else link,
                {"password1": PASSWORD, "password2": PASSWORD})
    member.refresh_from_db()
    assert member.check_password(PASSWORD)


# --- Navigation and error pages -----------------------------------------------------------------

def test_navigation_for_visitors_customers_and_staff(client, member, publisher, acme):
    anonymous = client.get("/").content.decode()
    assert 'href="/accounts/login/"' in anonymous and 'href="/accounts/signup/"' in anonymous
    assert "Publishers' console" not in anonymous

    client.force_login(member)
    customer = client.get("/").content.decode()
    assert "mike" in customer and acme.name in customer and ">Profile<" in customer
    assert re.search(r'<form[^>]*method="post"[^>]*action="/accounts/logout/"[^>]*>\s*<input type="hidden" '
                     r'name="csrfmiddlewaretoken"', customer)
    assert "Publishers' console" not in customer

    client.force_login(publisher)
    assert "Publishers' console" in client.get("/").content.decode()


def test_customers_do_not_get_the_console(client, db):
    client.post(reverse("account_signup"), signup_data())

    response = client.get("/admin/")

    assert response.status_code == 302 and response.url.startswith("/admin/login/")


def test_error_pages_have_the_sites_look(client, db, settings):
    settings.DEBUG = False
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert b"Page not found" in response.content and b'class="topbar"' in response.content

    html = render_to_string("500.html")  # as Django renders it: no request, no context
    assert "Something went wrong" in html and 'class="topbar"' in html


def test_the_favicon(client, db):
    response = client.get("/favicon.ico")

    assert response.status_code == 302 and response.url.endswith("favicon.svg")
    icon = client.get(response.url)
    assert icon.status_code == 200 and b"<svg" in b"".join(icon.streaming_content)
    assert b'rel="icon"' in client.get("/").content


# --- Profile and API tokens ---------------------------------------------------------------------

def test_a_new_token_secret_is_shown_once_and_works(client, member):
    client.force_login(member)

    response = client.post(reverse("marketplace:token-create"), {"name": "CI deploys"})
    assert response.status_code == 302

    first = client.get(reverse("marketplace:profile"))
    secret = first.context["new_token"]["secret"]
    assert secret in first.content.decode()
    assert first["Cache-Control"].startswith("max-age=0")
    again = client.get(reverse("marketplace:profile")).content.decode()
    assert secret not in again and "CI deploys" in again
    assert user_for_token(secret)[0] == member
    assert secret not in str(list(ApiToken.objects.values()))


def test_a_secret_waiting_in_the_session_is_encrypted(client, member):
    client.force_login(member)
    client.post(reverse("marketplace:token-create"), {"name": "CI deploys"})

    stored = str(dict(Session.objects.get().get_decoded()))
    secret = client.get(reverse("marketplace:profile")).context["new_token"]["secret"]

    assert secret.startswith("jct_") and secret not in stored


def test_a_duplicate_token_name_is_a_form_error(client, member):
    create_api_token(user=member, name="laptop")
    client.force_login(member)

    response = client.post(reverse("marketplace:token-create"), {"name": "laptop"})

    assert response.status_code == 400
    assert "already have a token named" in response.context["token_form"].errors["name"][0]
    assert ApiToken.objects.of(member).count() == 1


def test_revoking_asks_first_then_deletes(client, member):
    token, secret = create_api_token(user=member, name="old")
    client.force_login(member)
    url = reverse("marketplace:token-revoke", args=[token.pk])

    confirm = client.get(url)
    assert confirm.status_code == 200 and b"Revoke token" in confirm.content
    assert ApiToken.objects.filter(pk=token.pk).exists()

    assert client.post(url).status_code == 302
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    assert user_for_token(secret) is None


def test_another_users_token_is_not_found(client, member, publisher):
    token, _ = create_api_token(user=publisher, name="theirs")
    client.force_login(member)
    url = reverse("marketplace:token-revoke", args=[token.pk])

    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_pages_need_a_login(client, acme):
    for url in (reverse("marketplace:profile"), organization_url(acme)):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/accounts/login/")


@pytest.mark.parametrize("n_tokens", [1, 20])
def test_profile_queries_do_not_grow_with_tokens(client, member, n_tokens, django_assert_num_queries):
    for n in range(n_tokens):
        create_api_token(user=member, name=f"token {n}")
    client.force_login(member)

    # session, user, memberships, tokens, navigation's organizations
    with django_assert_num_queries(5):
        client.get(reverse("marketplace:profile"))


# --- Organization page ----------------------------------------------------------------------------

def test_members_read_the_page_owners_get_the_forms(client, acme, owner, member):
    client.force_login(member)
    as_member = client.get(organization_url(acme)).content.decode()
    assert "olga" in as_member and "mike" in as_member
    assert 'name="role"' not in as_member and "Invite someone" not in as_member

    client.force_login(owner)
    as_owner = client.get(organization_url(acme)).content.decode()
    assert f'<label class="visually-hidden" for="role-{Membership.objects.get(user=member).pk}">' in as_owner
    assert "Invite someone" in as_owner


def test_another_organizations_page_and_actions_are_not_found(client, acme, globex, owner, outsider):
    client.force_login(outsider)
    mike = factories.make_user("mike2")
    membership = factories.add_member(mike, acme, Role.MEMBER)

    assert client.get(organization_url(acme)).status_code == 404
    for url in (reverse("marketplace:member-role", args=[acme.slug, membership.pk]),
                reverse("marketplace:member-remove", args=[acme.slug, membership.pk]),
                reverse("marketplace:invitation-create", args=[acme.slug])):
        assert client.post(url, {"role": Role.OWNER}).status_code == 404
    assert Membership.objects.get(pk=membership.pk).role == Role.MEMBER
    assert not Invitation.objects.exists()


def test_a_member_who_is_not_owner_is_refused_with_403(client, acme, owner, member):
    client.force_login(member)

    response = client.post(reverse("marketplace:member-role", args=[acme.slug, Membership.objects.get(user=owner).pk]),
                           {"role": Role.MEMBER})

    assert response.status_code == 403
    assert b"owner role" in response.content
    assert Membership.objects.get(user=owner).role == Role.OWNER


def test_an_owner_changes_roles_and_the_last_owner_is_kept(client, acme, owner, member):
    client.force_login(owner)
    mike = Membership.objects.get(user=member)
    olga = Membership.objects.get(user=owner)

    client.post(reverse("marketplace:member-role", args=[acme.slug, mike.pk]), {"role": Role.PUBLISHER})
    response = client.post(reverse("marketplace:member-role", args=[acme.slug, olga.pk]), {"role": Role.MEMBER},
                           follow=True)

    assert Membership.objects.get(pk=mike.pk).role == Role.PUBLISHER
    assert Membership.objects.get(pk=olga.pk).role == Role.OWNER
    assert "keeps at least one owner" in response.content.decode()


def test_an_owner_removes_a_member_after_confirming(client, acme, owner, member):
    client.force_login(owner)
    url = reverse("marketplace:member-remove", args=[acme.slug, Membership.objects.get(user=member).pk])

    assert b"Remove mike from" in client.get(url).content
    assert Membership.objects.filter(user=member).exists()
    client.post(url)

    assert not Membership.objects.filter(user=member).exists()


def test_a_member_leaves(client, acme, owner, member):
    client.force_login(member)

    response = client.post(reverse("marketplace:organization-leave", args=[acme.slug]))

    assert response.url == reverse("marketplace:profile")
    assert not Membership.objects.filter(user=member).exists()
    assert client.get(organization_url(acme)).status_code == 404


@pytest.mark.parametrize("n_members", [2, 30])
def test_organization_page_queries_do_not_grow_with_members(client, acme, owner, n_members, django_assert_num_queries):
    for _ in range(n_members):
        factories.add_member(factories.make_user(), acme, Role.MEMBER)
    for _ in range(n_members // 2):
        invite_member(organization=acme, user=owner)
    client.force_login(owner)

    # session, user, the organization, the owner check, members with their users,
    # pending invitations with their makers, navigation's organizations
    with django_assert_num_queries(7):
        client.get(organization_url(acme))


# --- Invitations ------------------------------------------------------------------------------------

def invitation_link(client, organization, role=Role.MEMBER) -> str:
    client.post(reverse("marketplace:invitation-create", args=[organization.slug]), {"role": role})
    page = client.get(organization_url(organization))
    return page.context["new_link"]["url"]


def test_an_invitation_link_is_shown_once_and_stored_hashed(client, acme, owner):
    client.force_login(owner)

    link = invitation_link(client, acme, Role.PUBLISHER)

    token = link.rstrip("/").rsplit("/", 1)[1]
    invitation = Invitation.objects.get()
    assert invitation.digest == Invitation.digest_of(token) and invitation.role == Role.PUBLISHER
    assert link not in client.get(organization_url(acme)).content.decode()


def test_signing_up_through_an_invitation_joins_its_organization(client, acme, owner):
    client.force_login(owner)
    link = invitation_link(client, acme, Role.PUBLISHER)
    client.logout()

    invitation_page = client.get(link)
    assert invitation_page.status_code == 200 and invitation_page["Referrer-Policy"] == "no-referrer"
    signup_page = client.get(reverse("account_signup"))
    assert "organization" not in signup_page.context["form"].fields
    assert f"Join {acme.name}" in signup_page.content.decode()
    response = client.post(reverse("account_signup"), signup_data(organization=""))

    assert response.url == organization_url(acme)
    carla = User.objects.get(username="nina")
    assert list(Membership.objects.filter(user=carla).values_list("organization", "role")) == [(acme.pk, Role.PUBLISHER)]
    assert Organization.objects.count() == 1
    assert Invitation.objects.get().accepted_by == carla


def test_a_logged_in_user_accepts_and_a_second_use_is_not_found(client, acme, owner, outsider, globex):
    client.force_login(owner)
    link = invitation_link(client, acme)
    client.force_login(outsider)

    assert client.get(link).status_code == 200
    assert client.post(link).url == organization_url(acme)
    assert Membership.objects.get(user=outsider, organization=acme).role == Role.MEMBER
    other = factories.make_user()
    client.force_login(other)
    assert client.get(link).status_code == 404
    assert client.post(link).status_code == 404
    assert not Membership.objects.filter(user=other).exists()


def test_wrong_and_expired_links_answer_the_same_404(client, acme, owner, settings):
    settings.DEBUG = False
    invitation, token = invite_member(organization=acme, user=owner)
    wrong = client.get(reverse("marketplace:invitation", args=[token[:-2] + "xx"]))
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=invitation.created_at)
    expired = client.get(reverse("marketplace:invitation", args=[token]))

    assert wrong.status_code == expired.status_code == 404
    assert wrong.content == expired.content


def test_a_link_used_while_the_form_was_filled_in_is_said_and_creates_nobody(client, acme, owner):
    _, token = invite_member(organization=acme, role=Role.PUBLISHER, user=owner)
    client.get(reverse("marketplace:invitation", args=[token]))
    form = client.get(reverse("account_signup"))
    assert "organization" not in form.context["form"].fields
    someone = factories.make_user()
    other = type(client)()
    other.force_login(someone)
    other.post(reverse("marketplace:invitation", args=[token]))

    response = client.post(reverse("account_signup"), signup_data(organization=""))

    assert response.status_code == 200
    assert "This invitation link is not valid" in response.content.decode()
    assert response.context["form"].errors["organization"]  # now a sign-up of one's own
    assert not User.objects.filter(username="nina").exists()
    assert Membership.objects.filter(organization=acme).count() == 2
