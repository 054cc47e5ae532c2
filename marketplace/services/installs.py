"""Installing a version as an instance, and everything that changes an instance after."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import access, jsonvalues
from ..exceptions import Conflict, InvalidInput, NotInstallable
from ..models import Device, Instance, IntegrationVersion, Organization, ResourceBinding
from ..packaging.validation import cap_report
from ..validators import SECRET_MASK, secret_fields, validate_config


def _runtime():
    # The runtime app builds on marketplace; imported late so marketplace loads on its own.
    from runtime import lifecycle, schedules

    return lifecycle, schedules


def _check_installable(version: IntegrationVersion) -> None:
    if not version.is_published:
        raise NotInstallable("a draft cannot be installed; publish it first", field="version")
    if not version.available:
        raise NotInstallable(f"version {version.number} is marked unavailable and cannot be installed", field="version")
    # A version published before a cap was lowered may exceed it: refused with validation's words.
    over = cap_report(version.manifest, version.files)
    if not over.valid:
        raise NotInstallable("; ".join(issue.message for issue in over.errors), field="version")


def _resolve_config(version: IntegrationVersion, values, previous_secrets: dict | None = None) -> tuple[dict, dict]:
    """Validate config against the version's configSchema and split it into plain and
    secret parts. A secret sent back masked (or left out) keeps its previous value."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise InvalidInput("config must be a JSON object", field="config")
    try:
        jsonvalues.check_value(values)
    except jsonvalues.JSONRefused as exc:
        raise InvalidInput(f"config is not plain JSON: {exc.message}", field="config") from None
    schema = version.config_schema
    secrets = secret_fields(schema)
    merged = dict(values)
    for name in secrets:
        if merged.get(name) in (None, "", SECRET_MASK) and previous_secrets and name in previous_secrets:
            merged[name] = previous_secrets[name]
        elif merged.get(name) == SECRET_MASK:
            merged.pop(name)
    try:
        complete = validate_config(schema, merged)
    except ValidationError as exc:
        raise InvalidInput.from_validation_error(exc) from None
    plain = {k: v for k, v in complete.items() if k not in secrets}
    secret = {k: v for k, v in complete.items() if k in secrets}
    return plain, secret


def _resolve_bindings(version: IntegrationVersion, organization: Organization, bindings) -> dict[str, Device]:
    """Every resource the manifest declares must be bound to a device of ``organization``
    of the same kind; nothing else may be bound."""
    bindings = bindings or {}
    if not isinstance(bindings, dict):
        raise InvalidInput("bindings must map each resource alias to a device", field="bindings")
    declared = version.resources
    errors: dict[str, list[str]] = {}
    for alias in bindings:
        if alias not in declared:
            errors[f"bindings.{alias}"] = [f"{alias!r} is not a resource declared by version {version.number}"]
    ids = {alias: _device_id(d) for alias, d in bindings.items()}
    devices = Device.objects.in_bulk([pk for pk in ids.values() if _is_id(pk)])
    resolved: dict[str, Device] = {}
    for alias, spec in declared.items():
        kind = spec.get("kind") if isinstance(spec, dict) else None
        pk = ids.get(alias)
        device = devices.get(pk) if _is_id(pk) else None
        field = f"bindings.{alias}"
        if pk is None:
            errors[field] = [f"resource {alias!r} must be bound to a {kind} device"]
        elif device is None or device.organization_id != organization.pk:
            errors[field] = [f"device {pk!r} is not a device of {organization}"]
        elif device.kind != kind:
            errors[field] = [f"resource {alias!r} needs a {kind} device; {device.name!r} is {device.kind}"]
        else:
            resolved[alias] = device
    if errors:
        raise InvalidInput(errors=errors)
    return resolved


def _is_id(value) -> bool:
    # bool is an int in Python: JSON ``true`` must not bind device 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_name(name: str) -> str:
    """The instance name's own rules (its length), checked before anything is written."""
    try:
        Instance._meta.get_field("name").run_validators(name)
    except ValidationError as exc:
        raise InvalidInput(exc.messages[0], field="name") from None
    return name


def _device_id(value):
    if isinstance(value, Device):
        return value.pk
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def _replace_bindings(instance: Instance, resolved: dict[str, Device]) -> None:
    instance.bindings.exclude(alias__in=resolved).delete()
    for alias, device in resolved.items():
        ResourceBinding.objects.update_or_create(instance=instance, alias=alias, defaults={"device": device})


@transaction.atomic
def install_version(
    *,
    version: IntegrationVersion,
    organization: Organization,
    name: str,
    config: dict | None = None,
    bindings: dict | None = None,
    user=None,
) -> Instance:
    """Install a published, available version for ``organization``.

    ``config`` is checked against the configSchema (defaults filled in, secrets encrypted);
    ``bindings`` maps every declared resource alias to a Device (or its id) of the
    organization, of the alias's kind. Nothing is written unless all of it is right.
    """
    access.require_role(user, organization)
    access.require_visible(user, version.integration)
    # Lock the version: a concurrent "mark unavailable" cannot slip in between check and insert.
    version = IntegrationVersion.objects.select_for_update().select_related("integration").get(pk=version.pk)
    _check_installable(version)
    name = _check_name((name or "").strip() or version.integration.name)
    if Instance.objects.filter(organization=organization, name=name).exists():
        raise InvalidInput(f"{organization} already has an instance named {name!r}", field="name")
    plain, secret = _resolve_config(version, config)
    resolved = _resolve_bindings(version, organization, bindings)
    instance = Instance(
        organization=organization, version=version, name=name, config=plain, secret_config=secret,
        installed_by=user if user is not None and user.is_authenticated else None,
    )
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError:
        raise InvalidInput(f"{organization} already has an instance named {name!r}", field="name")
    _replace_bindings(instance, resolved)
    lifecycle, schedules = _runtime()
    schedules.sync_schedules(instance)
    # A failing install handler raises LifecycleFailed: the whole install rolls back.
    lifecycle.run_lifecycle(instance=instance, moment="install")
    return instance


def _locked(instance: Instance) -> Instance:
    return Instance.objects.select_for_update().select_related("version__integration", "organization").get(pk=instance.pk)


@transaction.atomic
def reconfigure_instance(
    *, instance: Instance, config: dict | None = None, bindings: dict | None = None, name: str | None = None, user=None
) -> Instance:
    """Change an instance's config, bindings or name; each is re-validated in full.
    Secret values sent back masked keep their stored value."""
    access.require_role(user, instance.organization)
    instance = _locked(instance)
    if name is not None:
        name = name.strip()
        if not name:
            raise InvalidInput("a name is required", field="name")
        _check_name(name)
        if Instance.objects.filter(organization=instance.organization, name=name).exclude(pk=instance.pk).exists():
            raise InvalidInput(f"{instance.organization} already has an instance named {name!r}", field="name")
        instance.name = name
    if config is not None:
        instance.config, instance.secret_config = _resolve_config(instance.version, config, instance.secret_config)
    if bindings is not None:
        _replace_bindings(instance, _resolve_bindings(instance.version, instance.organization, bindings))
    instance.save()
    _runtime()[1].sync_schedules(instance)
    return instance


@transaction.atomic
def upgrade_instance(
    *, instance: Instance, version: IntegrationVersion, config: dict | None = None, bindings: dict | None = None,
    user=None,
) -> Instance:
    """Move an instance to another available version of the same integration (up or
    down). Config is re-validated against the new configSchema (the current values when
    ``config`` is None); existing bindings are kept for aliases the new version still
    declares and ``bindings`` supplies or replaces the rest."""
    access.require_role(user, instance.organization)
    instance = _locked(instance)
    version = IntegrationVersion.objects.select_for_update().get(pk=version.pk)
    if version.integration_id != instance.version.integration_id:
        raise InvalidInput("an instance can only move to a version of its own integration", field="version")
    if version.pk == instance.version_id:
        raise Conflict(f"the instance already runs version {version.number}", field="version")
    _check_installable(version)
    # Secrets are left out of the current values; _resolve_config carries them over.
    current = dict(instance.config)
    plain, secret = _resolve_config(version, current if config is None else config, instance.secret_config)
    kept = {b.alias: b.device for b in instance.bindings.select_related("device") if b.alias in version.resources}
    resolved = _resolve_bindings(version, instance.organization, {**kept, **(bindings or {})})
    previous = instance.version
    instance.version, instance.config, instance.secret_config = version, plain, secret
    instance.save()
    _replace_bindings(instance, resolved)
    lifecycle, schedules = _runtime()
    schedules.sync_schedules(instance)
    # Input {from, to}: the version numbers. A failure rolls the upgrade back.
    lifecycle.run_lifecycle(instance=instance, moment="upgrade", input={"from": previous.number, "to": version.number})
    return instance


@transaction.atomic
def set_instance_enabled(*, instance: Instance, enabled: bool, user=None) -> Instance:
    """A disabled instance keeps its config and data but none of its handlers run."""
    access.require_role(user, instance.organization)
    instance = _locked(instance)
    if instance.enabled != enabled:
        instance.enabled = enabled
        instance.save(update_fields=["enabled"])
    _runtime()[1].sync_schedules(instance)
    return instance


@transaction.atomic
def uninstall_instance(*, instance: Instance, user=None) -> None:
    """Remove an instance with its bindings, storage, cache, runs and timer schedules."""
    access.require_role(user, instance.organization)
    instance = _locked(instance)
    # Uninstall handlers run first; their failure is logged, the instance goes anyway.
    _runtime()[0].run_lifecycle(instance=instance, moment="uninstall", raise_on_failure=False)
    instance.delete()


def touch_last_run(instance_id: int) -> None:
    Instance.objects.filter(pk=instance_id).update(last_run_at=timezone.now())
