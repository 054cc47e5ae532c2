"""Named queries: where pages, the API and the admin start, so "what is visible" and
"what is installable" are each defined once."""
from __future__ import annotations

from django.db import models
from django.db.models import Count, Exists, Max, OuterRef, Q

from .choices import Role, VersionState, Visibility


def _organizations_of(user, roles=None):
    from .models import Membership

    memberships = Membership.objects.filter(user=user)
    if roles is not None:
        memberships = memberships.filter(role__in=roles)
    return memberships.values("organization")


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
        # A subquery, not a join: no duplicate rows, so listings need no DISTINCT.
        return self.filter(Q(visibility=Visibility.PUBLIC) | Q(owner__in=_organizations_of(user)))

    def editable_by(self, user):
        """What a user may change: everything for superusers, else the integrations of
        organizations where they are owner or publisher."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(owner__in=_organizations_of(user, [Role.OWNER, Role.PUBLISHER]))

    def installable(self):
        """Integrations with at least one published, available version."""
        from .models import IntegrationVersion

        return self.filter(
            Exists(IntegrationVersion.objects.available().filter(integration=OuterRef("pk")))
        )

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
