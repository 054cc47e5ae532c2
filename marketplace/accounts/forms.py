"""Forms of the account pages. They check what the user typed; the rules themselves are
the services' (``check_organization_name`` is the one the sign-up service runs too)."""
from __future__ import annotations

from allauth.account.forms import LoginForm as AllauthLoginForm
from allauth.account.forms import SignupForm as AllauthSignupForm
from django import forms
from django.core.exceptions import ValidationError
from django.db import transaction

from ..choices import Role
from ..exceptions import InvalidInput
from ..models import ApiToken
from ..services.organizations import accept_invitation, check_organization_name, create_organization_for_signup


class LoginForm(AllauthLoginForm):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["login"].label = "Username or e-mail"  # allauth's label is "Login"


class SignupForm(AllauthSignupForm):
    """allauth's sign-up plus the organization the new user will own. Signing up through
    an invitation link (``invitation_token``) asks for no organization: the user joins the
    invitation's one instead. The user and the organization or membership are written in
    one transaction, so a refusal leaves no user without an organization."""

    organization = forms.CharField(
        label="Organization name", max_length=120,
        help_text="Your company or team. You will be its owner and can invite colleagues.",
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )
    field_order = ["organization", "username", "email", "password1", "password2"]

    def __init__(self, *args, invitation_token: str | None = None, **kwargs) -> None:
        self.invitation_token = invitation_token
        super().__init__(*args, **kwargs)
        if invitation_token:
            del self.fields["organization"]

    def clean_organization(self) -> str:
        try:
            name, _slug = check_organization_name(self.cleaned_data["organization"])
        except InvalidInput as exc:
            raise ValidationError(exc.errors["organization"]) from None
        return name

    def save(self, request):
        with transaction.atomic():
            user = super().save(request)
            if self.invitation_token:
                accept_invitation(token=self.invitation_token, user=user)
            else:
                create_organization_for_signup(user=user, name=self.cleaned_data["organization"])
        return user


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        label="Token name", max_length=ApiToken._meta.get_field("name").max_length,
        help_text="What uses it, e.g. “CI deploys” or “warehouse laptop”.",
    )


class InvitationForm(forms.Form):
    role = forms.ChoiceField(label="Role of the person you invite", choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices)
