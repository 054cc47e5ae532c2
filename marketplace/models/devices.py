from __future__ import annotations

from django.db import models

from ..choices import ResourceKind
from ..fields import EncryptedJSONField


class Device(models.Model):
    """A real target an instance's resource alias is bound to: an HTTP service (base URL)
    or a SQL database (DSN), owned by one organization. Credentials and headers are
    encrypted at rest and only decrypted by the runtime's dispatcher."""

    organization = models.ForeignKey("marketplace.Organization", on_delete=models.CASCADE, related_name="devices")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=8, choices=ResourceKind.choices)
    base_url = models.URLField(blank=True, help_text="For HTTP devices: scheme, host, port and optional base path.")
    dsn = models.CharField(
        max_length=500, blank=True, help_text="For SQL devices: sqlite:///path/to.db or postgresql://user@host/db."
    )
    credentials = EncryptedJSONField(help_text="Secrets such as username/password or token; encrypted at rest.")
    headers = EncryptedJSONField(help_text="Headers sent with every HTTP request; encrypted at rest.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="%(app_label)s_%(class)s_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def clean(self):
        from django.core.exceptions import ValidationError

        if self.kind == ResourceKind.HTTP and not self.base_url:
            raise ValidationError({"base_url": "an HTTP device needs a base URL"})
        if self.kind == ResourceKind.SQL and not self.dsn:
            raise ValidationError({"dsn": "a SQL device needs a DSN"})
        if self.kind == ResourceKind.SQL and not self.dsn.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValidationError({"dsn": "DSN must start with sqlite:///, postgresql:// or postgres://"})

    @property
    def target(self) -> str:
        return self.base_url if self.kind == ResourceKind.HTTP else self.dsn
