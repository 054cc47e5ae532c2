"""Named queries: where pages, the API and the admin start, so "what is visible" and
"what is installable" are each defined once."""
from __future__ import annotations

from django.db import models
from django.db.models import Count, Max, Q

from .choices import Role, VersionState, Visibility


class IntegrationQuerySet(models.QuerySet):
    def public(self):
        return self.filter(visibility=Visibility.PUBLIC)

    def owned_by(self, organizations):
        return self.filter(owner__in=organizations)

    def visible_to(self, user):
        """Public integrations, plus private ones of the user's organizations."""
        if user.is_authenticated and user.is_superuser:
            return self.all()
        if not user.is_authenticated:
            return self.public()
        return self.filter(Q(visibility=Visibility.PUBLIC) | Q(owner__memberships__user=user)).distinct()

    def editable_by(self, user):
        """What a user may change: everything for superusers, else the integrations of
        organizations where they are owner or publisher."""
        if user.is_superuser:
            return self.all()
        return self.filter(
            owner__memberships__user=user, owner__memberships__role__in=[Role.OWNER, Role.PUBLISHER]
        ).distinct()

    def installable(self):
        """Integrations with at least one published, available version."""
        return self.filter(versions__state=VersionState.PUBLISHED, versions__available=True).distinct()

    def search(self, text: str):
        text = (text or "").strip()
        if not text:
            return self
        return self.filter(Q(name__icontains=text) | Q(summary__icontains=text) | Q(description__icontains=text))

    def for_listing(self):
        return self.select_related("category", "owner").annotate(
            latest_number=Max("versions__number", filter=Q(versions__state=VersionState.PUBLISHED)),
            instance_count=Count("versions__instances", distinct=True),
        )


class VersionQuerySet(models.QuerySet):
    def published(self):
        return self.filter(state=VersionState.PUBLISHED)

    def drafts(self):
        return self.filter(state=VersionState.DRAFT)

    def available(self):
        return self.published().filter(available=True)


class InstanceQuerySet(models.QuerySet):
    def for_organizations(self, organizations):
        return self.filter(organization__in=organizations)

    def enabled(self):
        return self.filter(enabled=True)

    def of_integration(self, integration):
        return self.filter(version__integration=integration)
