"""The devices pages: ``/devices/`` lists the devices of the user's organizations; add,
edit, delete and test connection go through ``services.devices`` and
``services.connections``, as the console and the API do. Another organization's device
is a 404. ``?next=`` (a path on this site) brings the user back, e.g. to the install
wizard after "add a device".
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from .. import access
from ..accounts.errors import as_http_errors
from ..choices import ResourceKind
from ..exceptions import Conflict, DomainError
from ..formerrors import add_refusal
from ..models import Device, Organization, ResourceBinding
from ..services import devices as service
from ..services.connections import check_connection
from .forms import DeviceForm


def _next_url(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return reverse("marketplace:device-list")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


@never_cache
@login_required
def device_list(request):
    bindings = ResourceBinding.objects.select_related("instance").order_by("instance__name", "alias")
    devices = (
        Device.objects.visible_to(request.user).for_listing()
        .prefetch_related(Prefetch("bindings", queryset=bindings))
        .order_by("organization__name", "name")
    )
    organizations = list(Organization.objects.joined_by(request.user))
    return render(request, "marketplace/devices/list.html", {
        "devices": devices, "several_organizations": len(organizations) > 1, "kinds": ResourceKind.choices,
    })


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
@as_http_errors
def device_add(request):
    kind = request.POST.get("kind") or request.GET.get("kind")
    organizations = list(Organization.objects.joined_by(request.user).order_by("name"))
    if kind not in ResourceKind.values:
        return render(request, "marketplace/devices/choose_kind.html", {
            "kinds": ResourceKind.choices, "next": _next_url(request),
        })
    if not organizations:
        messages.info(request, "Join an organization before adding devices: ask an owner for an invitation link.")
        return redirect("marketplace:profile")
    status = 200
    if request.method == "POST":
        form = DeviceForm(request.POST, kind=kind, organizations=organizations)
        if form.is_valid():
            data = form.cleaned_data
            organization = next((o for o in organizations if o.slug == data.get("organization")), organizations[0])
            try:
                device = service.create_device(
                    organization=organization, name=data["name"], kind=kind, base_url=data.get("base_url", ""),
                    dsn=data.get("dsn", ""), credentials=form.credentials_value(), headers=form.headers_value(),
                    user=request.user,
                )
            except DomainError as exc:
                add_refusal(form, exc)
                status = 400
            else:
                messages.success(request, f"Device “{device.name}” added.")
                return redirect(_next_url(request))
        else:
            status = 400
    else:
        form = DeviceForm(kind=kind, organizations=organizations)
    return render(request, "marketplace/devices/form.html", {
        "form": form, "kind": ResourceKind(kind), "device": None, "next": _next_url(request),
    }, status=status)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
@as_http_errors
def device_edit(request, pk: int):
    device = access.get_device_for(request.user, pk, write=True)
    status = 200
    if request.method == "POST":
        form = DeviceForm(request.POST, kind=device.kind, editing=True)
        if form.is_valid():
            data = form.cleaned_data
            changes = {"base_url": data["base_url"]} if device.kind == ResourceKind.HTTP else {"dsn": data["dsn"]}
            try:
                service.update_device(device=device, user=request.user, name=data["name"],
                                      credentials=form.credentials_value(), headers=form.headers_value(), **changes)
            except DomainError as exc:
                add_refusal(form, exc)
                status = 400
            else:
                messages.success(request, f"Device “{data['name']}” saved.")
                return redirect(_next_url(request))
        else:
            status = 400
    else:
        form = DeviceForm(kind=device.kind, editing=True, initial={
            "name": device.name, "base_url": device.base_url, "dsn": device.target if device.dsn else "",
        })
    return render(request, "marketplace/devices/form.html", {
        "form": form, "kind": ResourceKind(device.kind), "device": device, "next": _next_url(request),
        "stored_credentials": sorted(device.credentials or {}), "stored_headers": sorted(device.headers or {}),
    }, status=status)


@login_required
@require_http_methods(["GET", "POST"])
@as_http_errors
def device_delete(request, pk: int):
    """GET asks for confirmation; POST deletes, or says which instances still use it."""
    device = access.get_device_for(request.user, pk, write=True)
    if request.method == "POST":
        try:
            service.delete_device(device=device, user=request.user)
        except Conflict as exc:
            messages.error(request, _sentence(exc.message))
        else:
            messages.success(request, f"Device “{device.name}” deleted.")
        return redirect("marketplace:device-list")
    return render(request, "marketplace/accounts/confirm.html", {
        "title": f"Delete the device “{device.name}”?",
        "explanation": f"{device.target} will no longer be available to bind. A device still bound to an "
                       "instance cannot be deleted.",
        "action": "Delete device",
        "cancel_url": reverse("marketplace:device-list"),
    })


@login_required
@require_http_methods(["POST"])
@as_http_errors
def device_test(request, pk: int):
    device = access.get_device_for(request.user, pk, write=True)
    result = check_connection(device=device, user=request.user)
    if result.ok:
        messages.success(request, f"{device.name}: connection works ({result.reason}).")
    else:
        messages.error(request, f"{device.name}: connection failed ({result.reason}).")
    return redirect(_next_url(request))

