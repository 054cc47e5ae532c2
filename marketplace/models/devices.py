from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import models

from ..choices import ResourceKind
from ..fields import EncryptedJSONField, EncryptedTextField
from ..querysets import DeviceQuerySet
from ..validators import masked_dsn, validate_device_base_url, validate_device_dsn


class Device(models.Model):
    """A real target an instance's resource alias is bound to: an HTTP service (base URL)
    or a SQL database (DSN), owned by one organization. The DSN (which may hold a
    password), credentials and headers are encrypted at rest and only decrypted by the
    runtime's dispatcher; the console shows them masked.

    A SQLite device names a file in its organization's device folder
    (``validators.sqlite_device_folder``): ``sqlite:///name.sqlite3`` is that folder's
    ``name.sqlite3``; a path elsewhere is refused here and again at run time."""

    organization = models.ForeignKey("marketplace.Organization", on_delete=models.CASCADE, related_name="devices")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=8, choices=ResourceKind.choices)
    base_url = models.URLField(blank=True, help_text="For HTTP devices: scheme, host, port and optional base path.")
    dsn = EncryptedTextField(
        blank=True, validators=[MaxLengthValidator(500)],
        help_text="For SQL devices: postgresql://user:password@host/db, or sqlite:///name.sqlite3 for a file in "
                  "your organization's device folder. Encrypted at rest; the password is shown masked.",
    )
    credentials = EncryptedJSONField(help_text="Secrets such as username/password or token; encrypted at rest.")
    headers = EncryptedJSONField(help_text="Headers sent with every HTTP request; encrypted at rest.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DeviceQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="%(app_label)s_%(class)s_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def clean(self):
        if self.kind == ResourceKind.HTTP:
            if not self.base_url:
                raise ValidationError({"base_url": "an HTTP device needs a base URL"})
            try:
                validate_device_base_url(self.base_url)
            except ValidationError as exc:
                raise ValidationError({"base_url": exc.error_list}) from None
        if self.kind == ResourceKind.SQL:
            if not self.dsn:
                raise ValidationError({"dsn": "a SQL device needs a DSN"})
            try:
                validate_device_dsn(self.dsn, organization_id=self.organization_id)
            except ValidationError as exc:
                raise ValidationError({"dsn": exc.error_list}) from None

    @property
    def target(self) -> str:
        """Where the device is, as anyone may see it: a DSN's password is masked."""
        return self.base_url if self.kind == ResourceKind.HTTP else masked_dsn(self.dsn)
