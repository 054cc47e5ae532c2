from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from ..choices import InstanceState
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
    """

    organization = models.ForeignKey("marketplace.Organization", on_delete=models.CASCADE, related_name="instances")
    version = models.ForeignKey("marketplace.IntegrationVersion", on_delete=models.CASCADE, related_name="instances")
    name = models.CharField(max_length=120)
    config = models.JSONField(default=dict, blank=True)
    secret_config = EncryptedJSONField()
    enabled = models.BooleanField(default=True)
    state = models.CharField(max_length=16, choices=InstanceState.choices, default=InstanceState.ACTIVE)
    last_error = models.TextField(blank=True)
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
