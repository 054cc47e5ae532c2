"""Sign-up, alone or through an invitation link, and the invitation page itself.

An invitation link opened by someone logged out remembers its token in the session; the
sign-up form then asks for no organization and the new user joins the invitation's one.
"""
from __future__ import annotations

from allauth.account.views import SignupView as AllauthSignupView
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.functional import cached_property
from django.views.decorators.cache import never_cache

from ..exceptions import Conflict, DomainError, NotFound
from ..models import Invitation
from ..services.organizations import accept_invitation, find_invitation
from .errors import add_to_form

INVITATION_SESSION_KEY = "junction_invitation"


class SignupView(AllauthSignupView):
    template_name = "account/signup.html"

    @cached_property
    def invitation(self) -> tuple[str, Invitation] | None:
        """The pending invitation this visitor opened, if any, with its token."""
        token = self.request.session.get(INVITATION_SESSION_KEY)
        if not token:
            return None
        try:
            return token, find_invitation(token)
        except NotFound as exc:
            # Used or expired since it was opened: say so, or the form would silently
            # turn into a sign-up with an organization of one's own.
            self.request.session.pop(INVITATION_SESSION_KEY, None)
            messages.error(self.request, exc.message[:1].upper() + exc.message[1:] + ".")
            return None

    def get_form_kwargs(self) -> dict:
        kwargs = super().get_form_kwargs()
        if self.invitation:
            kwargs["invitation_token"] = self.invitation[0]
        return kwargs

    def get_context_data(self, **kwargs) -> dict:
        if not self.invitation:
            return super().get_context_data(**kwargs)
        token, invitation = self.invitation
        invitation_url = reverse("marketplace:invitation", args=[token])
        return super().get_context_data(invitation=invitation, invitation_url=invitation_url, **kwargs)

    def get_success_url(self) -> str:
        if self.invitation:
            return reverse("marketplace:organization", args=[self.invitation[1].organization.slug])
        return super().get_success_url()

    def form_valid(self, form):
        try:
            response = super().form_valid(form)
        except NotFound:
            # The link was used or expired while this form was filled in.
            self.request.session.pop(INVITATION_SESSION_KEY, None)
            raise Http404("invitation") from None
        except DomainError as exc:
            add_to_form(form, exc)
            return self.form_invalid(form)
        if self.invitation:
            self.request.session.pop(INVITATION_SESSION_KEY, None)
            messages.success(self.request, f"Welcome to {self.invitation[1].organization}.")
        return response


@never_cache
def invitation(request, token: str):
    """The page an invitation link opens: who invites you where, and a button to join
    (or to sign up or log in first). Unknown, used and expired links are all a 404."""
    try:
        found = find_invitation(token)
    except NotFound:
        raise Http404("invitation") from None
    organization = found.organization
    if request.method == "POST" and request.user.is_authenticated:
        try:
            accept_invitation(token=token, user=request.user)
        except NotFound:
            raise Http404("invitation") from None
        except Conflict as exc:
            messages.info(request, exc.message[:1].upper() + exc.message[1:] + ".")
        else:
            messages.success(request, f"You joined {organization} as {found.get_role_display().lower()}.")
        return redirect("marketplace:organization", organization.slug)
    if not request.user.is_authenticated:
        request.session[INVITATION_SESSION_KEY] = token
    response = render(request, "marketplace/accounts/invitation.html", {"invitation": found, "organization": organization})
    # The token is in this page's address: keep it out of any Referer.
    response["Referrer-Policy"] = "no-referrer"
    return response
