"""The install wizard: ``/integrations/<slug>/install/?version=N``.

One page: the instance name, the configSchema's fields and a device picker per declared
resource. "Test connection" beside a picker posts the page to itself and shows the result
there, keeping what was typed (but secrets, which are never sent back). Installing is
``services.installs.install_version``: its refusals land on the fields they name, and a
failed install handler's message is shown (the service has left nothing half-installed).
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from .. import access
from ..accounts.errors import as_http_errors
from ..exceptions import DomainError
from ..formerrors import add_refusal
from ..models import Device, IntegrationVersion, Organization
from ..services.connections import check_connection
from ..services.installs import install_version
from .forms import ConfigForm


def instance_url(instance_id: int) -> str:
    return reverse("marketplace:instance-detail", args=[instance_id])


def _version(integration, number: str | None) -> IntegrationVersion:
    """The available version asked for, or the newest available one."""
    versions = integration.versions.available().order_by("-number")
    if number:
        if not number.isdigit():
            raise Http404("no such version")
        versions = versions.filter(number=int(number))
    version = versions.first()
    if version is None:
        raise Http404("no available version")
    return version


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
@as_http_errors
def install(request, slug: str):
    integration = access.get_integration_for(request.user, slug)
    version = _version(integration, request.GET.get("version"))
    organizations = list(Organization.objects.joined_by(request.user).order_by("name"))
    if not organizations:
        messages.info(request, "Join an organization before installing: ask an owner for an invitation link.")
        return redirect("marketplace:profile")
    wanted = request.POST.get("organization") or request.GET.get("organization")
    organization = next((o for o in organizations if o.slug == wanted), None)
    if organization is None:
        if len(organizations) > 1:
            return render(request, "marketplace/install/choose_organization.html", {
                "integration": integration, "version": version, "organizations": organizations,
            })
        organization = organizations[0]
    devices = list(Device.objects.filter(organization=organization).order_by("name"))
    form_kwargs = {"schema": version.config_schema, "resources": version.resources, "devices": devices,
                   "initial_name": integration.name}
    tests: dict[str, object] = {}
    status = 200
    if request.method == "POST":
        form = ConfigForm(request.POST, **form_kwargs)
        alias = request.POST.get("test")
        if alias is not None:
            tests[alias] = _test_binding(request, devices, alias)
        elif form.is_valid():
            try:
                instance = install_version(
                    version=version, organization=organization, name=form.cleaned_data["name"],
                    config=form.config(), bindings=form.bindings(), user=request.user,
                )
            except DomainError as exc:
                add_refusal(form, exc)
                status = 400
            else:
                messages.success(request, f"{instance.name} is installed.")
                return redirect(instance_url(instance.pk))
        else:
            status = 400
    else:
        form = ConfigForm(**form_kwargs)
    return render(request, "marketplace/install/wizard.html", {
        "integration": integration, "version": version, "organization": organization,
        "several_organizations": len(organizations) > 1, "form": form, "tests": tests,
        "devices_url": reverse("marketplace:device-add"),
    }, status=status)


def _test_binding(request, devices: list[Device], alias: str):
    chosen = request.POST.get(f"bindings.{alias}", "")
    device = next((d for d in devices if str(d.pk) == chosen), None)
    if device is None:
        return {"ok": False, "reason": "choose a device first"}
    result = check_connection(device=device, user=request.user)
    return {"ok": result.ok, "reason": result.reason, "device": device.name}
