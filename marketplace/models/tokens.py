from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models


class ApiTokenQuerySet(models.QuerySet):
    def of(self, user) -> ApiTokenQuerySet:
        """A user's own tokens: nobody, superusers included, lists another's."""
        if user is None or not user.is_authenticated:
            return self.none()
        return self.filter(user=user)


class ApiToken(models.Model):
    """A personal API token: a named secret a user's scripts send as
    ``Authorization: Bearer <token>``, acting as that user. Only a SHA-256 of the secret is
    stored (the secret is shown once, when created), with its first characters to tell
    tokens apart. Revoking deletes the row."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # The secret's first characters ("jct_AbCd"), shown in lists so a user can tell which is which.
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)  # serves the lookup of every authenticated request
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="%(app_label)s_%(class)s_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def digest_of(secret: str) -> str:
        # A token is 256 random bits: a plain hash is enough (no salt or slow hash needed,
        # and a fast one keeps the per-request lookup cheap).
        return hashlib.sha256(secret.encode()).hexdigest()
