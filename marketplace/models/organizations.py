from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models

from ..choices import Role
from ..querysets import InvitationQuerySet, OrganizationQuerySet


class Organization(models.Model):
    """A tenant. It publishes integrations, owns devices and installs instances; one
    organization can do all three."""

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=120, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in an organization: owners and publishers change its integrations;
    members install and run them."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="%(app_label)s_%(class)s_one_per_user_org"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class Invitation(models.Model):
    """A link that lets whoever holds it join an organization with a role: once, and
    until it expires (``JUNCTION_INVITATION_DAYS``). The link carries a random token;
    only its SHA-256 is stored, so the link is shown once, when made, and a copy of the
    database cannot be turned into links. Accepting keeps the row, marked used."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    digest = models.CharField(max_length=64, unique=True)  # serves the lookup of the link's token
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
    )
    accepted_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The organization page's list of its pending invitations.
            models.Index(fields=["organization", "expires_at"], name="marketplace_invite_org_expiry"),
        ]

    def __str__(self) -> str:
        return f"invitation to {self.organization} as {self.role}"

    @staticmethod
    def digest_of(token: str) -> str:
        # 256 random bits: a plain hash is enough, as for API tokens (ApiToken.digest_of).
        return hashlib.sha256(token.encode()).hexdigest()
