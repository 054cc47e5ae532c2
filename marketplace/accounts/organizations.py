"""The organization page: its members and their roles, and for its owners the forms that
manage them and the invitations. Any member reads it; another organization's page is a
404. Who may do what is the services' rule (``services.organizations``): these views show
the forms to owners only, and a refusal comes back as a message."""
from __future__ import annotations

from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from .. import access
from ..choices import Role
from ..exceptions import Conflict, InvalidInput, NotFound
from ..models import Invitation, Organization
from ..services import organizations as service
from .errors import as_http_errors
from .forms import InvitationForm, RoleForm
from .once import reveal_once, take_revealed

ROLE_ORDER = {role: n for n, role in enumerate(Role.values)}  # owners first, as Role lists them


def _organization(request, slug: str) -> Organization:
    return access.get_organization_for(request.user, slug)


def _refused(request, exc: InvalidInput | Conflict) -> None:
    messages.error(request, exc.message[:1].upper() + exc.message[1:] + ".")


@login_required
def my_organization(request):
    """Where sign-up lands: the user's (first) organization, or the profile without one."""
    organization = Organization.objects.joined_by(request.user).order_by("name").first()
    if organization is None:
        messages.info(request, "You do not belong to any organization: ask an owner for an invitation link.")
        return redirect("marketplace:profile")
    return redirect("marketplace:organization", organization.slug)


@never_cache
@login_required
@as_http_errors
def organization(request, slug: str):
    organization = _organization(request, slug)
    is_owner = access.has_role(request.user, organization, service.OWNERS)
    memberships = sorted(
        organization.memberships.select_related("user"),
        key=lambda m: (ROLE_ORDER.get(m.role, len(ROLE_ORDER)), m.user.get_username().lower()),
    )
    context = {
        "organization": organization,
        "memberships": memberships,
        "is_owner": is_owner,
        "is_member": any(m.user_id == request.user.pk for m in memberships),
        "roles": Role.choices,
    }
    if is_owner:
        new_link = take_revealed(request, f"invitation:{organization.pk}")
        if new_link:
            new_link["expires_at"] = datetime.fromisoformat(new_link["expires_at"])
        context.update(
            invitations=Invitation.objects.pending().filter(organization=organization).select_related("created_by"),
            invitation_form=InvitationForm(),
            new_link=new_link,
        )
    return render(request, "marketplace/accounts/organization.html", context)


@login_required
@require_http_methods(["POST"])
@as_http_errors
def create_invitation(request, slug: str):
    organization = _organization(request, slug)
    form = InvitationForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose the role of the person you invite.")
        return redirect("marketplace:organization", slug)
    invitation, token = service.invite_member(organization=organization, role=form.cleaned_data["role"], user=request.user)
    reveal_once(request, f"invitation:{organization.pk}", {
        "url": request.build_absolute_uri(reverse("marketplace:invitation", args=[token])),
        "role": invitation.get_role_display(),
        "expires_at": invitation.expires_at.isoformat(),
    })
    return redirect("marketplace:organization", slug)


@login_required
@require_http_methods(["POST"])
@as_http_errors
def revoke_invitation(request, slug: str, pk: int):
    organization = _organization(request, slug)
    service.revoke_invitation(organization=organization, invitation_id=pk, user=request.user)
    messages.success(request, "Invitation revoked: its link no longer works.")
    return redirect("marketplace:organization", slug)


@login_required
@require_http_methods(["POST"])
@as_http_errors
def change_role(request, slug: str, pk: int):
    organization = _organization(request, slug)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles.")
        return redirect("marketplace:organization", slug)
    try:
        membership = service.change_role(organization=organization, membership_id=pk, role=form.cleaned_data["role"],
                                         user=request.user)
    except (InvalidInput, Conflict) as exc:
        _refused(request, exc)
    else:
        messages.success(request, f"{membership.user.get_username()} is now {membership.get_role_display().lower()}.")
    return redirect("marketplace:organization", slug)


@login_required
@as_http_errors
def remove_member(request, slug: str, pk: int):
    """GET asks for confirmation; POST removes."""
    organization = _organization(request, slug)
    membership = organization.memberships.select_related("user").filter(pk=pk).first()
    if membership is None:
        raise NotFound("member")
    access.require_role(request.user, organization, service.OWNERS)
    name = membership.user.get_username()
    if request.method == "POST":
        try:
            service.remove_member(organization=organization, membership_id=pk, user=request.user)
        except Conflict as exc:
            _refused(request, exc)
        else:
            messages.success(request, f"{name} is no longer a member of {organization}.")
        return redirect("marketplace:organization", slug)
    return render(request, "marketplace/accounts/confirm.html", {
        "title": f"Remove {name} from {organization}?",
        "explanation": f"{name} will no longer see {organization}'s integrations, devices and instances. "
                       "You can invite them again later.",
        "action": "Remove member",
        "cancel_url": reverse("marketplace:organization", args=[slug]),
    })


@login_required
@as_http_errors
def leave(request, slug: str):
    """GET asks for confirmation; POST leaves."""
    organization = _organization(request, slug)
    if request.method == "POST":
        try:
            service.leave_organization(organization=organization, user=request.user)
        except Conflict as exc:
            _refused(request, exc)
            return redirect("marketplace:organization", slug)
        messages.success(request, f"You left {organization}.")
        return redirect("marketplace:profile")
    return render(request, "marketplace/accounts/confirm.html", {
        "title": f"Leave {organization}?",
        "explanation": f"You will no longer see {organization}'s integrations, devices and instances, "
                       "unless an owner invites you again.",
        "action": "Leave organization",
        "cancel_url": reverse("marketplace:organization", args=[slug]),
    })
