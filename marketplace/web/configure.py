"""Reconfigure and rebind an instance: ``/instances/<id>/configure/``.

The install wizard's generated form (``forms.ConfigForm``), prefilled from the
instance's config and bindings. Secrets are never rendered back: a secret field left
empty keeps the stored value (the service's ``previous_secrets`` rule), a typed one
replaces it. Saving is ``services.installs.reconfigure_instance``, the console's and the
API's door too; it writes config, bindings and name in one transaction, so a refusal
(shown on the field it names) leaves the instance as it was.
"""
from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from ..accounts.errors import as_http_errors
from ..exceptions import DomainError, NotFound
from ..formerrors import add_refusal
from ..models import Device
from ..services.installs import reconfigure_instance
from .forms import ConfigForm
from .instances import _mine


def _initial_value(field: forms.Field, value: Any) -> Any:
    # Choice fields carry their values as JSON text (forms._enum_field).
    if isinstance(field, forms.TypedMultipleChoiceField):
        return [json.dumps(v) for v in value] if isinstance(value, list) else []
    if isinstance(field, forms.TypedChoiceField):
        return json.dumps(value)
    return value


def prefill(form: ConfigForm, config: dict, bindings: dict[str, int]) -> None:
    """Put the stored plain config and bindings in ``form``'s initial values. Secrets are
    in ``secret_config``, never here, and their inputs never render a value anyway."""
    def walk(path: str, values: dict) -> None:
        for name, value in values.items():
            key = f"{path}.{name}"
            if isinstance(value, dict):
                walk(key, value)
            elif key in form.fields and name not in (form.secrets if path == "config" else ()):
                form.initial[key] = _initial_value(form.fields[key], value)
    walk("config", config if isinstance(config, dict) else {})
    for alias, device_id in bindings.items():
        if f"bindings.{alias}" in form.fields:
            form.initial[f"bindings.{alias}"] = str(device_id)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
@as_http_errors
def configure(request, pk: int):
    # Members only, like the other instance pages: staff and superusers have the console.
    instance = _mine(request.user).select_related("organization", "version__integration").filter(pk=pk).first()
    if instance is None:
        raise NotFound(f"no instance {pk} among your organizations'")
    version = instance.version
    devices = list(Device.objects.filter(organization=instance.organization).order_by("name"))
    form_kwargs = {"schema": version.config_schema, "resources": version.resources, "devices": devices}
    status = 200
    if request.method == "POST":
        form = ConfigForm(request.POST, **form_kwargs)
        if form.is_valid():
            try:
                instance = reconfigure_instance(instance=instance, config=form.config(), bindings=form.bindings(),
                                     name=form.cleaned_data["name"], user=request.user)
            except DomainError as exc:
                add_refusal(form, exc)
                status = 400
            else:
                messages.success(request, f"{instance.name} is saved.")
                return redirect("marketplace:instance-detail", instance.pk)
        else:
            status = 400
    else:
        form = ConfigForm(**form_kwargs)
        form.initial["name"] = instance.name
        prefill(form, instance.config, {b.alias: b.device_id for b in instance.bindings.all()})
    for name in form.secrets & set(instance.secret_config or {}):
        field = form.fields.get(f"config.{name}")
        if field is not None:
            field.help_text = " ".join(filter(None, [field.help_text, "A value is stored: leave empty to keep it."]))
    return render(request, "marketplace/instances/configure.html", {
        "instance": instance, "form": form, "devices_url": reverse("marketplace:device-add"),
    }, status=status)
