"""Installing a version as an instance, and everything that changes an instance after.

Lifecycle handlers (install, upgrade, uninstall) are untrusted code that may wait on a
device for up to a minute, so none runs inside a transaction or under a row lock. Each
such operation is three steps, each committed on its own:

1. check and write the change with the instance in a state of its own (``installing``,
   ``upgrading`` with a ``PendingUpgrade`` to go back to, ``uninstalling``): its timers
   are held and its events refused meanwhile;
2. run the handlers (the runtime's ``run_lifecycle`` through ``hooks.runtime_hooks()``,
   each run committed as it goes);
3. activate, or undo: a failed install leaves the instance ``failed`` with ``last_error``,
   no bindings and no timers, and its failed run; a failed upgrade puts back the previous
   version, config and bindings, with ``last_error``. An uninstall removes the instance
   whatever its handlers did.

An operation whose version has no handler for its moment is done in one transaction. A
process that dies during step 2 leaves the instance in its moment's state:
``settle_stalled_instances`` (housekeeping) finishes it as failed once
JUNCTION_LIFECYCLE_STALL_SECONDS have passed.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .. import access, jsonvalues
from ..choices import LIVE_STATES, TRANSITIONAL_STATES, InstanceState
from ..exceptions import Conflict, InvalidInput, LifecycleFailed, NotInstallable
from ..hooks import runtime_hooks
from ..models import Device, Instance, IntegrationVersion, Organization, PendingUpgrade, ResourceBinding
from ..packaging.validation import cap_report
from ..validators import SECRET_MASK, secret_fields, validate_config

if TYPE_CHECKING:
    from ..querysets import AnyUser

log = logging.getLogger(__name__)


def _check_installable(version: IntegrationVersion) -> None:
    if not version.is_published:
        raise NotInstallable("a draft cannot be installed; publish it first", field="version")
    if not version.available:
        raise NotInstallable(f"version {version.number} is marked unavailable and cannot be installed", field="version")
    # A version published before a cap was lowered may exceed it: refused with validation's words.
    over = cap_report(version.manifest, version.files)
    if not over.valid:
        raise NotInstallable("; ".join(issue.message for issue in over.errors), field="version")


def _resolve_config(version: IntegrationVersion, values: object, previous_secrets: dict | None = None) -> tuple[dict, dict]:
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


def _resolve_bindings(version: IntegrationVersion, organization: Organization, bindings: object) -> dict[str, Device]:
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


# The largest primary key any backend stores (a signed 64-bit integer); a larger number in a
# query is an OverflowError on SQLite and a DataError on PostgreSQL, not a missing device.
MAX_ID = 2**63 - 1


def _all_of(*checks: Callable[[], Any]) -> list[Any]:
    """Every check's result. Their refusals (InvalidInput) are raised together, so a caller
    learns about a wrong config and a wrong binding at once, each under its own field."""
    results, errors = [], {}
    for check in checks:
        try:
            results.append(check())
        except InvalidInput as exc:
            errors.update(exc.errors)
    if errors:
        raise InvalidInput(errors=errors)
    return results


def _is_id(value: object) -> bool:
    # bool is an int in Python: JSON ``true`` must not bind device 1.
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def _check_name(name: str) -> str:
    """The instance name's own rules (its length), checked before anything is written."""
    try:
        Instance._meta.get_field("name").run_validators(name)
    except ValidationError as exc:
        raise InvalidInput(exc.messages[0], field="name") from None
    return name


def _device_id(value: object) -> object:
    if isinstance(value, Device):
        return value.pk
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def _replace_bindings(instance: Instance, resolved: dict[str, Device]) -> None:
    instance.bindings.exclude(alias__in=resolved).delete()
    for alias, device in resolved.items():
        ResourceBinding.objects.update_or_create(instance=instance, alias=alias, defaults={"device": device})


# --- Lifecycle states -------------------------------------------------------------------------

def _has_handlers(instance: Instance, moment: str) -> bool:
    return bool(runtime_hooks().lifecycle_handlers(instance, moment))


def _stalled(instance: Instance, now: datetime | None = None) -> bool:
    """Whether a lifecycle moment began so long ago that its process must be gone: its
    handlers each end within their timeout plus the kill margin."""
    since = instance.state_changed_at
    limit = timedelta(seconds=settings.JUNCTION_LIFECYCLE_STALL_SECONDS)
    return since is None or since < (now or timezone.now()) - limit


def _set_state(instance: Instance, state: str, error: str | None = None) -> None:
    instance.state = state
    instance.state_changed_at = timezone.now()
    if error is not None:
        instance.last_error = error


def _require_live(instance: Instance, doing: str) -> None:
    """Refuse to change an instance whose lifecycle moment is running or whose install failed."""
    if instance.state in LIVE_STATES:
        return
    if instance.state == InstanceState.FAILED:
        raise Conflict(
            f"{instance.name} cannot be {doing}: its install failed ({instance.last_error}); "
            "install it again under the same name, or uninstall it", field="instance",
        )
    raise Conflict(
        f"{instance.name} cannot be {doing} while it is {instance.get_state_display().lower()}; "
        "try again once that has finished", field="instance",
    )


def _run_moment(
    instance: Instance, moment: str, undo: Callable[[Instance, str], Instance | None], input: dict | None = None
) -> None:
    """Step 2: run the moment's handlers, no transaction open. On a failure ``undo``
    (step 3's other branch) records it, and the failure is raised with the instance as
    left (``LifecycleFailed.instance``)."""
    try:
        runtime_hooks().run_lifecycle(instance=instance, moment=moment, input=input)
    except LifecycleFailed as failure:
        failure.instance = undo(instance, failure.message)
        raise
    except Exception:
        log.exception("the %s handlers of instance %s could not be run", moment, instance.pk)
        undo(instance, f"the {moment} handlers could not be run: the platform failed (its logs say why)")
        raise


@transaction.atomic
def _activate(instance: Instance, *, moment: str) -> Instance:
    """Step 3 after handlers that succeeded: the instance becomes active, with its timers.
    Bindings of aliases the version no longer declares (kept through an upgrade) go."""
    expected = {"install": InstanceState.INSTALLING, "upgrade": InstanceState.UPGRADING}[moment]
    instance = _locked(instance)
    if instance.state != expected:  # settled as stalled meanwhile (settle_stalled_instances)
        raise Conflict(f"the {moment} of {instance.name} was given up meanwhile: {instance.last_error}", field="instance")
    _set_state(instance, InstanceState.ACTIVE, error="")
    instance.save(update_fields=["state", "state_changed_at", "last_error"])
    instance.bindings.exclude(alias__in=list(instance.version.resources)).delete()
    PendingUpgrade.objects.filter(instance=instance).delete()
    runtime_hooks().sync_schedules(instance)
    return instance


# --- Installing -------------------------------------------------------------------------------

def install_version(
    *,
    version: IntegrationVersion,
    organization: Organization,
    name: str,
    config: dict | None = None,
    bindings: dict | None = None,
    user: AnyUser = None,
) -> Instance:
    """Install a published, available version for ``organization``.

    ``config`` is checked against the configSchema (defaults filled in, secrets encrypted);
    ``bindings`` maps every declared resource alias to a Device (or its id) of the
    organization, of the alias's kind. Nothing is written unless all of it is right.

    With install handlers, the instance is committed ``installing`` (timers held, events
    refused) and the handlers run with no transaction open and no row locked; then it is
    activated. If one fails, the instance is left ``failed`` (``last_error``, the failed
    run kept; bindings and timers removed) and LifecycleFailed is raised. Installing the
    same integration under that name again retries on the failed instance's row, so its
    failed runs stay in its history.
    """
    instance = _write_install(
        version=version, organization=organization, name=name, config=config, bindings=bindings, user=user
    )
    if instance.state == InstanceState.ACTIVE:
        return instance
    _run_moment(instance, "install", _fail_install)
    return _activate(instance, moment="install")


@transaction.atomic
def _write_install(
    *, version: IntegrationVersion, organization: Organization, name: str, config: dict | None,
    bindings: dict | None, user: AnyUser,
) -> Instance:
    """Step 1: check everything and write the instance, active when the version has no
    install handler, else ``installing`` with its bindings and its timers held."""
    access.require_role(user, organization)
    access.require_visible(user, version.integration)
    # Lock the version for this short transaction: a concurrent "mark unavailable" cannot
    # slip in between check and insert. Never held while handlers run.
    version = IntegrationVersion.objects.select_for_update().select_related("integration").get(pk=version.pk)
    _check_installable(version)
    name = _check_name((name or "").strip() or version.integration.name)
    instance = _instance_for_install(organization, name, version)
    (plain, secret), resolved = _all_of(
        lambda: _resolve_config(version, config), lambda: _resolve_bindings(version, organization, bindings)
    )
    instance.version, instance.config, instance.secret_config = version, plain, secret
    instance.installed_by = user if user is not None and user.is_authenticated else None
    instance.installed_at = timezone.now()
    _set_state(instance, InstanceState.INSTALLING if _has_handlers(instance, "install") else InstanceState.ACTIVE,
               error="")
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError:
        raise InvalidInput(f"{organization} already has an instance named {name!r}", field="name") from None
    _replace_bindings(instance, resolved)
    # Checks every timer's schedule now; the rows stay disabled until the instance is active.
    runtime_hooks().sync_schedules(instance)
    return instance


def _instance_for_install(organization: Organization, name: str, version: IntegrationVersion) -> Instance:
    """A new instance, or the row of this name whose install of the same integration
    failed (or stalled): installing again retries there."""
    existing = (
        Instance.objects.select_for_update().select_related("version")
        .filter(organization=organization, name=name).first()
    )
    if existing is None:
        return Instance(organization=organization, name=name)
    retry = existing.state == InstanceState.FAILED or (existing.state == InstanceState.INSTALLING and _stalled(existing))
    if retry and existing.version.integration_id == version.integration_id:
        return existing
    raise InvalidInput(f"{organization} already has an instance named {name!r}", field="name")


@transaction.atomic
def _fail_install(instance: Instance, message: str) -> Instance | None:
    """Step 3 after a failed install handler: the instance stays, ``failed`` with the
    reason, without bindings (its devices are free again) or timers; its runs are kept."""
    instance = Instance.objects.select_for_update().filter(pk=instance.pk).first()
    if instance is None or instance.state != InstanceState.INSTALLING:
        return instance
    _set_state(instance, InstanceState.FAILED, error=message)
    instance.save(update_fields=["state", "state_changed_at", "last_error"])
    instance.bindings.all().delete()
    instance.timer_schedules.all().delete()
    return instance


def _locked(instance: Instance) -> Instance:
    return Instance.objects.select_for_update().select_related("version__integration", "organization").get(pk=instance.pk)


# --- Changing an installed instance ---------------------------------------------------------

@transaction.atomic
def reconfigure_instance(
    *, instance: Instance, config: dict | None = None, bindings: dict | None = None, name: str | None = None, user: AnyUser = None
) -> Instance:
    """Change an instance's config, bindings or name; each is re-validated in full.
    Secret values sent back masked keep their stored value. Refused (Conflict) while a
    lifecycle moment runs or after a failed install."""
    access.require_role(user, instance.organization)
    instance = _locked(instance)
    _require_live(instance, "changed")
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
    runtime_hooks().sync_schedules(instance)
    return instance


def upgrade_instance(
    *, instance: Instance, version: IntegrationVersion, config: dict | None = None, bindings: dict | None = None,
    user: AnyUser = None,
) -> Instance:
    """Move an instance to another available version of the same integration (up or
    down). Config is re-validated against the new configSchema (the current values when
    ``config`` is None); existing bindings are kept for aliases the new version still
    declares and ``bindings`` supplies or replaces the rest.

    With upgrade handlers (input ``{from, to}``: the version numbers), the instance is
    committed on the new version in state ``upgrading`` (timers held, events refused;
    what to go back to in a ``PendingUpgrade``) and the handlers run with no transaction
    open. If one fails, the previous version, config and bindings are put back, the
    instance is active again with ``last_error`` saying why, the failed run is kept and
    LifecycleFailed is raised.
    """
    instance, previous = _write_upgrade(instance=instance, version=version, config=config, bindings=bindings, user=user)
    if instance.state != InstanceState.UPGRADING:
        return instance
    to = instance.version.number
    _run_moment(instance, "upgrade", _roll_back_upgrade, input={"from": previous, "to": to})
    return _activate(instance, moment="upgrade")


@transaction.atomic
def _write_upgrade(
    *, instance: Instance, version: IntegrationVersion, config: dict | None, bindings: dict | None, user: AnyUser,
) -> tuple[Instance, int]:
    """Step 1: check and write the new version, config and bindings; with upgrade
    handlers, as ``upgrading`` with a PendingUpgrade. Returns the instance and the
    previous version's number."""
    access.require_role(user, instance.organization)
    instance = _locked(instance)
    _require_live(instance, "upgraded")
    version = IntegrationVersion.objects.select_for_update().get(pk=version.pk)
    if version.integration_id != instance.version.integration_id:
        raise InvalidInput("an instance can only move to a version of its own integration", field="version")
    if version.pk == instance.version_id:
        raise Conflict(f"the instance already runs version {version.number}", field="version")
    _check_installable(version)
    # Secrets are left out of the current values; _resolve_config carries them over.
    current = dict(instance.config)
    plain, secret = _resolve_config(version, current if config is None else config, instance.secret_config)
    bound = {b.alias: b.device for b in instance.bindings.select_related("device")}
    kept = {alias: device for alias, device in bound.items() if alias in version.resources}
    resolved = _resolve_bindings(version, instance.organization, {**kept, **(bindings or {})})
    previous = instance.version
    back = {"previous_version": previous, "previous_config": instance.config,
            "previous_secret_config": instance.secret_config,
            "previous_bindings": {alias: device.pk for alias, device in bound.items()}}
    instance.version, instance.config, instance.secret_config = version, plain, secret
    if _has_handlers(instance, "upgrade"):
        _set_state(instance, InstanceState.UPGRADING)
        instance.save()
        PendingUpgrade.objects.update_or_create(instance=instance, defaults=back)
        # Aliases the new version drops stay bound until it is active: a roll-back needs their devices.
        for alias, device in resolved.items():
            ResourceBinding.objects.update_or_create(instance=instance, alias=alias, defaults={"device": device})
    else:
        instance.save()
        _replace_bindings(instance, resolved)
    runtime_hooks().sync_schedules(instance)
    return instance, previous.number


@transaction.atomic
def _roll_back_upgrade(instance: Instance, message: str) -> Instance | None:
    """Step 3 after a failed upgrade handler: the previous version, config and bindings
    come back and the instance is active again, with the reason in ``last_error``."""
    instance = Instance.objects.select_for_update().filter(pk=instance.pk).first()
    if instance is None or instance.state != InstanceState.UPGRADING:
        return instance
    pending = PendingUpgrade.objects.select_related("previous_version").filter(instance=instance).first()
    if pending is None:
        return instance
    to = instance.version.number
    devices = Device.objects.in_bulk(list(pending.previous_bindings.values()))
    restored = {alias: devices[pk] for alias, pk in pending.previous_bindings.items() if pk in devices}
    lost = sorted(set(pending.previous_bindings) - set(restored))
    if lost:
        message += f" (rolled back; bind {', '.join(lost)} again: the device was deleted meanwhile)"
    instance.version = pending.previous_version
    instance.config, instance.secret_config = pending.previous_config, pending.previous_secret_config
    _set_state(instance, InstanceState.ACTIVE, error=f"the upgrade to version {to} failed: {message}")
    instance.save()
    _replace_bindings(instance, restored)
    pending.delete()
    runtime_hooks().sync_schedules(instance)
    return instance


@transaction.atomic
def set_instance_enabled(*, instance: Instance, enabled: bool, user: AnyUser = None) -> Instance:
    """A disabled instance keeps its config and data but none of its handlers run."""
    access.require_role(user, instance.organization)
    instance = _locked(instance)
    if instance.enabled != enabled:
        instance.enabled = enabled
        instance.save(update_fields=["enabled"])
    runtime_hooks().sync_schedules(instance)
    return instance


# --- Uninstalling -------------------------------------------------------------------------------

def uninstall_instance(*, instance: Instance, user: AnyUser = None) -> None:
    """Remove an instance with its bindings, storage, cache, runs and timer schedules.

    Its uninstall handlers run first, with the instance committed ``uninstalling`` (timers
    held, events refused) and no transaction open; their failure is logged and the
    instance goes anyway (a broken integration must stay removable). An instance whose
    install failed, or whose lifecycle moment stalled, goes without running them. Refused
    (Conflict) while an install, upgrade or uninstall of it is running."""
    instance = _begin_uninstall(instance=instance, user=user)
    if instance is None:
        return
    runtime_hooks().run_lifecycle(instance=instance, moment="uninstall", raise_on_failure=False)
    with transaction.atomic():
        Instance.objects.filter(pk=instance.pk).delete()


@transaction.atomic
def _begin_uninstall(*, instance: Instance, user: AnyUser) -> Instance | None:
    """Step 1: delete the instance now (None) when no handler is to run, else mark it
    ``uninstalling`` and return it."""
    access.require_role(user, instance.organization)
    instance = _locked(instance)
    if instance.state in TRANSITIONAL_STATES and not _stalled(instance):
        raise Conflict(
            f"{instance.name} cannot be uninstalled while it is {instance.get_state_display().lower()}; "
            "try again once that has finished", field="instance",
        )
    if instance.state not in LIVE_STATES or not _has_handlers(instance, "uninstall"):
        instance.delete()
        return None
    _set_state(instance, InstanceState.UNINSTALLING)
    instance.save(update_fields=["state", "state_changed_at"])
    runtime_hooks().sync_schedules(instance)
    return instance


# --- Housekeeping -------------------------------------------------------------------------------

def settle_stalled_instances(*, now: datetime | None = None) -> int:
    """Finish lifecycle moments whose process died mid-way (a crash between the steps):
    an install becomes ``failed``, an upgrade is rolled back, an uninstall is done; each
    with ``last_error`` saying so. Only moments older than JUNCTION_LIFECYCLE_STALL_SECONDS
    are touched, far beyond the longest a live one can take. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.JUNCTION_LIFECYCLE_STALL_SECONDS)
    stalled = Instance.objects.filter(state__in=TRANSITIONAL_STATES).filter(
        Q(state_changed_at__lt=cutoff) | Q(state_changed_at__isnull=True)
    )
    why = "the process running its handlers stopped before they were done"
    settled = 0
    for pk, state in stalled.values_list("pk", "state"):
        if state in (InstanceState.INSTALLING, InstanceState.UPGRADING):
            if state == InstanceState.INSTALLING:
                left = _fail_install(Instance(pk=pk), f"the install did not finish: {why}")
            else:
                left = _roll_back_upgrade(Instance(pk=pk), why)
            settled += left is not None and left.state not in TRANSITIONAL_STATES
        else:
            with transaction.atomic():
                settled += Instance.objects.filter(pk=pk, state=InstanceState.UNINSTALLING).delete()[0] > 0
    if settled:
        log.warning("settled %s instances whose lifecycle moment stalled", settled)
    return settled


def touch_last_run(instance_id: int) -> None:
    Instance.objects.filter(pk=instance_id).update(last_run_at=timezone.now())
