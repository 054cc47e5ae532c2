"""The profile page: who you are, your organizations, and your personal API tokens."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from ..exceptions import InvalidInput
from ..models import ApiToken, Membership
from ..services.tokens import create_api_token, revoke_api_token
from .errors import add_to_form, as_http_errors
from .forms import ApiTokenForm
from .once import reveal_once, take_revealed


def _render_profile(request, form: ApiTokenForm, status: int = 200):
    memberships = Membership.objects.filter(user=request.user).select_related("organization").order_by("organization__name")
    return render(request, "marketplace/accounts/profile.html", {
        "memberships": memberships,
        "tokens": ApiToken.objects.of(request.user),
        "token_form": form,
        "new_token": take_revealed(request, "api_token"),
    }, status=status)


@never_cache
@login_required
def profile(request):
    return _render_profile(request, ApiTokenForm())


@never_cache
@login_required
@require_http_methods(["POST"])
def create_token(request):
    """The secret goes to the next page view only (``once``): a reload shows it no more."""
    form = ApiTokenForm(request.POST)
    if form.is_valid():
        try:
            token, secret = create_api_token(user=request.user, name=form.cleaned_data["name"])
        except InvalidInput as exc:
            add_to_form(form, exc)
        else:
            reveal_once(request, "api_token", {"name": token.name, "secret": secret})
            return redirect("marketplace:profile")
    return _render_profile(request, form, status=400)


@login_required
@as_http_errors
def revoke_token(request, pk: int):
    """GET asks for confirmation; POST revokes. Another user's token is a 404."""
    token = ApiToken.objects.of(request.user).filter(pk=pk).first()
    if token is None:
        raise Http404("token")
    if request.method == "POST":
        revoke_api_token(user=request.user, token_id=pk)
        messages.success(request, f"Token “{token.name}” revoked: requests that send it are refused from now on.")
        return redirect("marketplace:profile")
    return render(request, "marketplace/accounts/confirm.html", {
        "title": f"Revoke the token “{token.name}”?",
        "explanation": f"Scripts that send the token starting {token.prefix}… will be refused. This cannot be undone.",
        "action": "Revoke token",
        "cancel_url": reverse("marketplace:profile"),
    })
