"""Devices: creating, editing and deleting the targets instances bind their resource
aliases to. Devices are the customer's side: any member of the device's organization
manages them (docs/access.md); another organization's device is NotFound.

Credentials and headers are write-only: no front door shows them, so an edit either leaves
them (``None``), replaces them (a JSON object) or clears them (``{}``). A DSN comes back to
the caller with its password masked; sent back still masked, the stored password is kept
(``validators.dsn_keeping_password``). Where a device may point (egress, SQLite files in
the organization's folder) is ``Device.clean()``'s rule, run here by ``full_clean``, so
every front door gets the same messages.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from .. import access
from ..exceptions import Conflict, InvalidInput
from ..models import Device, Instance, Organization
from ..validators import dsn_keeping_password
from .common import full_clean

if TYPE_CHECKING:
    from ..querysets import AnyUser

# Marks the fields a caller leaves as they are.
# Typed Any so that the parameters defaulting to it keep the type a caller passes.
UNCHANGED: Any = object()


@transaction.atomic
def create_device(
    *,
    organization: Organization,
    name: str,
    kind: str,
    base_url: str = "",
    dsn: str = "",
    credentials: dict | None = None,
    headers: dict | None = None,
    user: AnyUser,
) -> Device:
    """Create a device of ``organization`` (PermissionDenied for non-members). Raises
    InvalidInput keyed by field: a name the organization already uses, a missing or
    refused base URL or DSN, secrets that are not JSON objects."""
    access.require_role(user, organization)
    device = Device(
        organization=organization, kind=kind, base_url=base_url or "", dsn=dsn or "",
        credentials=_secrets("credentials", credentials or {}), headers=_secrets("headers", headers or {}),
    )
    device.name = _free_name(device, name)
    return _save(device)


@transaction.atomic
def update_device(
    *,
    device: Device,
    user: AnyUser,
    organization: Organization = UNCHANGED,
    name: str | None = UNCHANGED,
    kind: str = UNCHANGED,
    base_url: str | None = UNCHANGED,
    dsn: str | None = UNCHANGED,
    credentials: dict | None = None,
    headers: dict | None = None,
) -> Device:
    """Change ``device``; fields not given stay. ``credentials``/``headers``: None keeps
    them, an object replaces them, ``{}`` clears them. ``dsn`` may keep its password
    masked (for the same server only). Moving the device to another organization needs a
    role there and no instance bound to it (Conflict naming them)."""
    device = _locked(device, user)
    if organization is not UNCHANGED and organization.pk != device.organization_id:
        access.require_role(user, organization)
        _refuse_if_bound(device, "moved to another organization", field="organization")
        device.organization = organization
    if kind is not UNCHANGED:
        device.kind = kind
    if base_url is not UNCHANGED:
        device.base_url = base_url or ""
    if dsn is not UNCHANGED:
        try:
            device.dsn = dsn_keeping_password(dsn or "", device.dsn or "")
        except ValidationError as exc:
            raise InvalidInput(exc.messages[0], field="dsn") from None
    if credentials is not None:
        device.credentials = _secrets("credentials", credentials)
    if headers is not None:
        device.headers = _secrets("headers", headers)
    device.name = _free_name(device, device.name if name is UNCHANGED else name)
    return _save(device)


@transaction.atomic
def delete_device(*, device: Device, user: AnyUser) -> None:
    """Delete ``device``. A device bound to instances is refused (Conflict) with the
    instances named: unbind or uninstall them first."""
    device = _locked(device, user)
    _refuse_if_bound(device, "deleted")
    try:
        with transaction.atomic():
            device.delete()
    except ProtectedError:
        # Bound meanwhile by an install that committed after the check above.
        _refuse_if_bound(device, "deleted")
        raise


def _locked(device: Device, user: AnyUser) -> Device:
    """The device's row, locked, if ``user`` may change it (NotFound otherwise)."""
    device = access.get_device_for(user, device.pk, write=True)
    return Device.objects.select_for_update().get(pk=device.pk)


def _refuse_if_bound(device: Device, what: str, field: str = "__all__") -> None:
    names = list(
        Instance.objects.filter(bindings__device=device).order_by("name").values_list("name", flat=True).distinct()
    )
    if names:
        listed = ", ".join(names)
        raise Conflict(
            f"{device.name} is bound to {len(names)} instance{'s' if len(names) > 1 else ''} ({listed}) and cannot be "
            f"{what}: bind them to another device or uninstall them first",
            field=field,
        )


def _free_name(device: Device, name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("a name is required", field="name")
    taken = Device.objects.filter(organization_id=device.organization_id, name=name).exclude(pk=device.pk)
    if taken.exists():
        raise InvalidInput(f"{device.organization} already has a device named {name!r}", field="name")
    return name


def _secrets(field: str, value: object) -> dict:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise InvalidInput('must be a JSON object, e.g. {"token": "..."}', field=field)
    return value


def _save(device: Device) -> Device:
    # Uniqueness is checked with the domain's message above; the constraint is the backstop.
    full_clean(device, validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            device.save()
    except IntegrityError:
        raise InvalidInput(f"the name {device.name!r} was just taken", field="name") from None
    return device
