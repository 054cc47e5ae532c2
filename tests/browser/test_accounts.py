"""Accounts and organizations in a real browser: a customer signs up with an organization,
makes an API token, invites a colleague by link, who signs up through it; the owner
changes the colleague's role and removes them. A second organization sees none of it.
Every page passes axe-core with no serious or critical violation; screenshots of each
step go to var/screenshots/<test>/."""
from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from marketplace.choices import Role
from marketplace.models import ApiToken, Membership

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-Long-pass-phrase-42"


@pytest.fixture
def new_page(browser, live_server):
    """Another visitor: a page in a browser context of its own (own cookies)."""
    contexts = []

    def new_page(width: int = 1280):
        context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield new_page
    for context in contexts:
        context.close()


def sign_up(page, *, username: str, organization: str | None):
    page.goto("/")
    page.get_by_role("link", name="Sign up").click()
    if organization is not None:
        page.get_by_label("Organization name").fill(organization)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)


def member_row(page, username: str):
    return page.locator(f'tr[data-member="{username}"]')


def test_sign_up_tokens_invitations_and_roles(page, new_page, screenshot, assert_accessible):
    # 1. Sign up: the user and their organization, logged in on its page.
    sign_up(page, username="nina", organization="Nina Widgets")
    assert_accessible(page)
    screenshot("01-sign-up-form")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/organizations/nina-widgets/")
    account_nav = page.get_by_role("navigation", name="Account")
    expect(account_nav).to_contain_text("nina")
    expect(account_nav.get_by_role("link", name="Nina Widgets")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("Nina Widgets")
    expect(member_row(page, "nina")).to_contain_text("(you)")
    assert_accessible(page)
    screenshot("02-signed-up-organization")

    # 2. A personal API token: the secret shown once, gone after a reload.
    account_nav.get_by_role("link", name="Profile").click()
    page.get_by_label("Token name").fill("CI deploys")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token-secret").inner_text().strip()
    assert secret.startswith("jct_") and len(secret) > 40
    assert_accessible(page)
    screenshot("03-token-created")
    page.reload()
    expect(page.locator("#new-token-secret")).to_have_count(0)
    assert secret not in page.content()
    expect(page.get_by_role("row", name="CI deploys")).to_contain_text(secret[:8])
    assert ApiToken.objects.get().name == "CI deploys"
    screenshot("04-token-listed-after-reload")

    # 3. An invitation link for a colleague.
    account_nav.get_by_role("link", name="Nina Widgets").click()
    page.get_by_label("Role of the person you invite").select_option(Role.MEMBER)
    page.get_by_role("button", name="Create invitation link").click()
    link = page.locator("#invitation-link").inner_text().strip()
    assert "/invitations/" in link
    assert_accessible(page)
    screenshot("05-invitation-link")

    # 4. The colleague opens it and signs up through it: no organization of their own.
    colleague = new_page()
    colleague.goto(link)
    expect(colleague.get_by_role("heading", level=1)).to_have_text("Join Nina Widgets")
    assert_accessible(colleague)
    screenshot("06-invitation-page", on=colleague)
    colleague.get_by_role("link", name="Sign up and join").click()
    expect(colleague.get_by_label("Organization name")).to_have_count(0)
    sign_up_fields = {"Username": "carla", "Email": "carla@example.com"}
    for label, value in sign_up_fields.items():
        colleague.get_by_label(label).fill(value)
    colleague.get_by_label("Password:", exact=True).fill(PASSWORD)
    colleague.get_by_label("Password (again)").fill(PASSWORD)
    assert_accessible(colleague)
    colleague.get_by_role("button", name="Sign up and join").click()
    colleague.wait_for_url("**/organizations/nina-widgets/")
    expect(member_row(colleague, "carla")).to_contain_text("Member")
    expect(colleague.get_by_role("button", name="Create invitation link")).to_have_count(0)  # read-only for members
    screenshot("07-colleague-joined", on=colleague)

    # 5. The owner makes the colleague a publisher.
    page.reload()
    page.get_by_label("Role of carla", exact=True).select_option(Role.PUBLISHER)
    page.get_by_role("button", name="Change the role of carla").click()
    expect(page.get_by_role("status")).to_contain_text("carla is now publisher")
    assert Membership.objects.get(user__username="carla").role == Role.PUBLISHER
    screenshot("08-role-changed")

    # 6. ... and removes them, after confirming.
    page.get_by_role("link", name="Remove carla").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Remove carla from Nina Widgets?")
    assert_accessible(page)
    screenshot("09-remove-confirmation")
    page.get_by_role("button", name="Remove member").click()
    expect(page.get_by_role("status")).to_contain_text("carla is no longer a member")
    expect(member_row(page, "carla")).to_have_count(0)
    screenshot("10-member-removed")

    # 7. A second organization sees none of it; the used link is a 404 for it too.
    other = new_page()
    sign_up(other, username="gus", organization="Globex Tools")
    other.get_by_role("button", name="Sign up").click()
    other.wait_for_url("**/organizations/globex-tools/")
    rows = other.locator("tbody tr[data-member]")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("gus")
    assert "Nina Widgets" not in other.content() and "nina" not in other.inner_text("main")
    response = other.goto("/organizations/nina-widgets/")
    assert response.status == 404
    expect(other.get_by_role("heading", level=1)).to_have_text("Page not found")
    assert_accessible(other)
    screenshot("11-other-organization-404", on=other)
    assert other.goto(link).status == 404
    assert colleague.goto(link).status == 404
    assert not Membership.objects.filter(user__username="gus", organization__slug="nina-widgets").exists()

    # 8. Log out is a POST from the navigation.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("navigation", name="Account").get_by_role("link", name="Log in")).to_be_visible()
    assert_accessible(page)
    screenshot("12-logged-out")


def test_account_pages_at_phone_width_with_visible_focus(new_page, screenshot, assert_accessible):
    phone = new_page(width=375)
    sign_up(phone, username="pia", organization="Pocket Co")
    phone.get_by_role("button", name="Sign up").click()
    phone.wait_for_url("**/organizations/pocket-co/")

    for path in ("/organizations/pocket-co/", "/profile/", "/accounts/email/", "/accounts/password/change/",
                 "/organizations/pocket-co/leave/"):
        phone.goto(path)
        overflow = phone.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 375px"
        assert_accessible(phone)
        screenshot(f"phone-{path.strip('/').replace('/', '-')}", on=phone)

    # The first Tab lands on the skip link, shown with a focus outline.
    phone.goto("/profile/")
    phone.keyboard.press("Tab")
    focused = phone.evaluate("""() => {
        const el = document.activeElement, style = getComputedStyle(el);
        return {text: el.textContent.trim(), outline: style.outlineStyle, width: style.outlineWidth,
                left: el.getBoundingClientRect().left};
    }""")
    assert focused["text"] == "Skip to content"
    assert focused["outline"] != "none" and focused["width"] != "0px" and focused["left"] >= 0


def test_login_and_password_reset_pages_pass_axe(new_page, assert_accessible, screenshot):
    visitor = new_page()
    for path, name in (("/accounts/login/", "login"), ("/accounts/password/reset/", "password-reset"),
                       ("/no/such/page/", "404")):
        visitor.goto(path)
        assert_accessible(visitor)
        screenshot(name, on=visitor)


def test_password_reset_by_mail_then_login_by_email(page, member, screenshot, assert_accessible):
    page.goto("/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label(re.compile("^E-?mail")).fill(member.email)
    page.get_by_role("button", name=re.compile("reset", re.I)).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Password Reset")
    screenshot("01-reset-mail-sent")

    link = re.search(r"https?://\S+/accounts/password/reset/key/\S+", mail.outbox[-1].body).group(0)
    page.goto(link)
    page.get_by_label(re.compile("^New Password:?$")).fill(PASSWORD)
    page.get_by_label(re.compile(r"^New Password \(again\)")).fill(PASSWORD)
    assert_accessible(page)
    screenshot("02-new-password")
    page.get_by_role("button", name=re.compile("change password", re.I)).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Password")

    page.goto("/accounts/login/")
    page.get_by_label("Username or e-mail").fill(member.email)
    page.get_by_label(re.compile("^Password")).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("navigation", name="Account")).to_contain_text(member.username)
    screenshot("03-logged-in-by-email")
