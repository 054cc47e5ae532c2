from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from ..choices import LIVE_STATES, InstanceState
from ..fields import EncryptedJSONField
from ..querysets import InstanceQuerySet
from ..validators import SECRET_MASK, secret_fields


def new_webhook_token() -> str:
    return secrets.token_urlsafe(24)


class Instance(models.Model):
    """A published version installed for an organization, with its config and resource
    bindings. Deleting the integration (or the version) deletes its instances.

    Config values are split on write: plain values in ``config``, secret ones (``format:
    password`` or ``writeOnly`` in the configSchema) encrypted in ``secret_config``. Reads
    go through ``masked_config()``; only the runtime calls ``runtime_config()``.

    ``state`` says where the instance is in its life (``services.installs``): ``installing``,
    ``upgrading`` and ``uninstalling`` while those lifecycle handlers run (committed, so
    the handlers run outside any transaction; timers held, events refused), ``failed``
    once an install handler failed (no bindings, no timers; the failed run is kept), else
    ``active``. ``last_error`` says why the last lifecycle moment failed.
    """

    organization = models.ForeignKey("marketplace.Organization", on_delete=models.CASCADE, related_name="instances")
    version = models.ForeignKey("marketplace.IntegrationVersion", on_delete=models.CASCADE, related_name="instances")
    name = models.CharField(max_length=120)
    config = models.JSONField(default=dict, blank=True)
    secret_config = EncryptedJSONField()
    enabled = models.BooleanField(default=True)
    state = models.CharField(max_length=16, choices=InstanceState.choices, default=InstanceState.ACTIVE)
    last_error = models.TextField(blank=True)
    # When ``state`` last changed: an install, upgrade or uninstall still in progress long
    # after it began lost its process (services.installs.settle_stalled_instances).
    state_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    webhook_token = models.CharField(max_length=64, unique=True, default=new_webhook_token, editable=False)
    installed_at = models.DateTimeField(auto_now_add=True)
    installed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_run_at = models.DateTimeField(null=True, blank=True)

    objects = InstanceQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="%(app_label)s_%(class)s_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.version})"

    @property
    def integration(self):
        return self.version.integration

    @property
    def runs_handlers(self) -> bool:
        """Whether its timers fire and its events are taken: enabled and live."""
        return self.enabled and self.state in LIVE_STATES

    def masked_config(self) -> dict:
        """Config as shown anywhere outside the runtime: secrets are never read back."""
        masked = dict(self.config)
        for name in secret_fields(self.version.config_schema):
            if name in self.secret_config:
                masked[name] = SECRET_MASK
        return masked

    def runtime_config(self) -> dict:
        """Config with secrets decrypted: for ``ctx.config`` only."""
        return {**self.config, **self.secret_config}


class ResourceBinding(models.Model):
    """Binds one manifest resource alias of an instance to a device of the instance's
    organization and of the alias's kind; the runtime dispatcher resolves aliases here."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="bindings")
    alias = models.CharField(max_length=120)
    device = models.ForeignKey("marketplace.Device", on_delete=models.PROTECT, related_name="bindings")

    class Meta:
        ordering = ["instance", "alias"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "alias"], name="%(app_label)s_%(class)s_one_per_alias"),
        ]

    def __str__(self) -> str:
        return f"{self.alias} → {self.device}"


class PendingUpgrade(models.Model):
    """An upgrade whose handlers are running. The instance already runs the new version
    (state ``upgrading``); this row holds what it goes back to if a handler fails: the
    previous version, its config and the devices bound to each alias. Removed when the
    upgrade is activated or rolled back."""

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, related_name="pending_upgrade")
    previous_version = models.ForeignKey(
        "marketplace.IntegrationVersion", on_delete=models.CASCADE, related_name="+"
    )
    previous_config = models.JSONField(default=dict, blank=True)
    previous_secret_config = EncryptedJSONField()
    # alias → device id; a device deleted meanwhile is left unbound by a roll-back.
    previous_bindings = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.instance_id}: back to version {self.previous_version_id} on failure"
