"""Named queries: where the marketplace pages and the console start, so "what is visible",
"what may be changed" and "what is installable" are each defined once.

Two kinds of rows belong to organizations (docs/access.md):
- the customer's side (devices, instances and what they produce: runs, storage, timers,
  seen items) belongs to one organization, whose members see and change it; an instance
  and its runs are seen, as support fields only, by the integration's publishers too;
- the publisher's side (integrations and what hangs off them: versions, attachments, API
  documents) is changed by the owning organization's owners and publishers.

Every query here takes the user: anonymous users get nothing (or the public catalog),
superusers everything. ``roles`` narrows which memberships make a user one of an
organization's own; the console passes ``PUBLISHING_ROLES``, being the publishers' tool.
Conditions are subqueries over forward foreign keys, so no row appears twice.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Self, TypeAlias

from django.apps import apps
from django.db import models
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from .choices import Role, VersionState, Visibility

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from .models import Integration, Organization

    # Who a query is asked for: a logged-in user or the anonymous one; where None is also
    # taken (no one: nothing is visible), AnyUser.
    User: TypeAlias = AbstractBaseUser | AnonymousUser
    AnyUser: TypeAlias = User | None
    Roles: TypeAlias = Iterable[str]

ALL_ROLES = tuple(Role.values)
PUBLISHING_ROLES = (Role.OWNER, Role.PUBLISHER)


def _model(name: str) -> Any:
    # The models import this module for their managers: other models are named by label,
    # as a ForeignKey names them, so the imports run one way (tests/test_import_layers.py).
    return apps.get_model("marketplace", name)


def _organizations_of(user: AnyUser, roles: Roles | None = None) -> models.QuerySet:
    memberships = _model("Membership").objects.filter(user=user)
    if roles is not None:
        memberships = memberships.filter(role__in=roles)
    return memberships.values("organization")


def _in_organizations(path: str, user: AnyUser, roles: Roles | None) -> Q:
    return Q(**{f"{path}__in": _organizations_of(user, roles)})


class ScopedQuerySet(models.QuerySet):
    """Shared by every organization-owned row: ``_scoped`` settles anonymous users and
    superusers once, and builds ``condition(user)`` for everyone else."""

    def _scoped(self, user: AnyUser, condition: Callable[[AnyUser], Q]) -> Self:
        if user is None or not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(condition(user))


class OrganizationRowsQuerySet(ScopedQuerySet):
    """Rows of the customer's side. ``organization_path`` leads to the organization whose
    members see and change a row; ``publisher_path``, where set, to the organization
    whose publishers see it too (support fields only: ``access.sees_instance_data``)."""

    organization_path = "organization"
    publisher_path: str | None = None

    def visible_to(self, user: AnyUser, *, roles: Roles = ALL_ROLES) -> Self:
        def condition(user: AnyUser) -> Q:
            own = _in_organizations(self.organization_path, user, roles)
            if self.publisher_path:
                return own | _in_organizations(self.publisher_path, user, PUBLISHING_ROLES)
            return own

        return self._scoped(user, condition)

    def changeable_by(self, user: AnyUser, *, roles: Roles = ALL_ROLES) -> Self:
        return self._scoped(user, lambda user: _in_organizations(self.organization_path, user, roles))


class PublisherRowsQuerySet(ScopedQuerySet):
    """Rows of the publisher's side: visible with their integration, changed by its
    owning organization's owners and publishers. ``integration_path`` leads to it."""

    integration_path = "integration"

    def visible_to(self, user: User) -> Self:
        visible = _model("Integration").objects.visible_to(user).values("pk")
        return self.filter(**{f"{self.integration_path}__in": visible})

    def changeable_by(self, user: AnyUser) -> Self:
        return self._scoped(user, lambda user: _in_organizations(f"{self.integration_path}__owner", user, PUBLISHING_ROLES))


class OrganizationQuerySet(OrganizationRowsQuerySet):
    """Organizations a user belongs to (``roles`` narrows which memberships count). Only
    superusers change organizations and memberships; the console enforces it."""

    organization_path = "pk"

    def joined_by(self, user: AnyUser) -> Self:
        """The organizations ``user`` is a member of, superusers included (``visible_to``
        gives superusers every organization): theirs, for the site's navigation."""
        if user is None or not user.is_authenticated:
            return self.none()
        return self.filter(pk__in=_organizations_of(user))


class InvitationQuerySet(models.QuerySet):
    def pending(self) -> Self:
        """Invitations that can still be accepted: not used and not expired."""
        return self.filter(accepted_at__isnull=True, expires_at__gt=timezone.now())


class IntegrationQuerySet(models.QuerySet):
    def public(self) -> Self:
        return self.filter(visibility=Visibility.PUBLIC)

    def owned_by(self, organizations: Iterable[Organization] | models.QuerySet) -> Self:
        return self.filter(owner__in=organizations)

    def visible_to(self, user: User) -> Self:
        """Public integrations, plus private ones of the user's organizations."""
        if user.is_authenticated and user.is_superuser:
            return self.all()
        if not user.is_authenticated:
            return self.public()
        # A subquery, not a join: no duplicate rows, so listings need no DISTINCT.
        return self.filter(Q(visibility=Visibility.PUBLIC) | Q(owner__in=_organizations_of(user)))

    def editable_by(self, user: User) -> Self:
        """What a user may change: everything for superusers, else the integrations of
        organizations where they are owner or publisher."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(owner__in=_organizations_of(user, PUBLISHING_ROLES))

    def installable(self) -> Self:
        """Integrations with at least one published, available version."""
        return self.filter(_has_available_version())

    def offered_to(self, user: User) -> Self:
        """What the catalog lists: visible integrations that can be installed. One with no
        available published version is not offered to new customers, but its owner's
        members still find it (superusers see everything, as in ``visible_to``)."""
        visible = self.visible_to(user)
        if user.is_authenticated and user.is_superuser:
            return visible
        installable = _has_available_version()
        if not user.is_authenticated:
            return visible.filter(installable)
        return visible.filter(installable | Q(owner__in=_organizations_of(user)))

    def search(self, text: str, *, publisher: bool = False) -> Self:
        """Name, summary and description contain ``text``; with ``publisher``, the owning
        organization's name may match instead (the catalog's search box)."""
        text = (text or "").strip()
        if not text:
            return self
        match = Q(name__icontains=text) | Q(summary__icontains=text) | Q(description__icontains=text)
        if publisher:
            match |= Q(owner__name__icontains=text)
        return self.filter(match)

    def with_latest_number(self) -> Self:
        """Annotated with ``latest_number``: the newest published version's number (None
        before the first). A correlated subquery, not an aggregate over a join: PostgreSQL
        computes it for a page's rows only (after the sort and limit), and ``count()``
        drops it."""
        return self.annotate(latest_number=_latest_number())

    def with_related_slugs(self) -> Self:
        """Annotated with ``organization_slug`` and ``category_slug``: what a list shows of
        the owner and category, without building their objects. Subqueries rather than
        joins, so that ``count()`` drops them and counts the integrations alone."""
        return self.annotate(organization_slug=_owner_slug(), category_slug=_category_slug())

    def for_listing(self) -> Self:
        """With the category and owner, ``latest_number`` and ``instance_count``."""
        Instance = _model("Instance")

        instances = (Instance.objects.filter(version__integration=OuterRef("pk")).order_by()
                     .values("version__integration").annotate(n=Count("pk")).values("n"))
        return self.select_related("category", "owner").with_latest_number().annotate(
            instance_count=Coalesce(Subquery(instances), 0),
        )


def _has_available_version() -> Exists:
    return Exists(_model("IntegrationVersion").objects.available().filter(integration=OuterRef("pk")))


# The subqueries of the integration listing, built once: they do not depend on the user,
# and building them took a quarter of a page's query time. Django copies an expression
# when a queryset resolves it, so one instance serves every queryset.
@functools.cache
def _latest_number() -> Subquery:
    IntegrationVersion = _model("IntegrationVersion")

    return Subquery(IntegrationVersion.objects.published().filter(integration=OuterRef("pk"))
                    .order_by("-number").values("number")[:1])


@functools.cache
def _owner_slug() -> Subquery:
    Organization = _model("Organization")

    return Subquery(Organization.objects.filter(pk=OuterRef("owner_id")).values("slug"))


@functools.cache
def _category_slug() -> Subquery:
    Category = _model("Category")

    return Subquery(Category.objects.filter(pk=OuterRef("category_id")).values("slug"))


class VersionQuerySet(PublisherRowsQuerySet):
    def visible_to(self, user: User) -> Self:
        """Published versions of the integrations the user sees, and every version (drafts
        included) of the integrations they publish."""
        visible = _model("Integration").objects.visible_to(user).values("pk")
        published = Q(state=VersionState.PUBLISHED, integration__in=visible)
        if not user.is_authenticated:
            return self.filter(published)
        if user.is_superuser:
            return self.all()
        return self.filter(published | _in_organizations("integration__owner", user, PUBLISHING_ROLES))

    def editable_by(self, user: AnyUser) -> Self:
        """Versions of the integrations ``user`` may change (``Integration.editable_by``)."""
        return self.changeable_by(user)

    def published(self) -> Self:
        return self.filter(state=VersionState.PUBLISHED)

    def drafts(self) -> Self:
        return self.filter(state=VersionState.DRAFT)

    def available(self) -> Self:
        return self.published().filter(available=True)


class InstanceQuerySet(OrganizationRowsQuerySet):
    """Seen by their organization and by the integration's publishers; changed by their
    organization."""

    publisher_path = "version__integration__owner"

    def for_listing(self) -> Self:
        # Instance.__str__ names its version, whose __str__ names the integration.
        return self.select_related("organization", "version__integration")

    def for_organizations(self, organizations: Iterable[Organization] | models.QuerySet) -> Self:
        return self.filter(organization__in=organizations)

    def enabled(self) -> Self:
        return self.filter(enabled=True)

    def of_integration(self, integration: Integration) -> Self:
        return self.filter(version__integration=integration)

    def with_status(self) -> Self:
        """Annotated for the customers' list: ``newest_available`` (the highest available
        version number of its integration), ``last_run_status`` and ``last_run_created_at``
        (its newest run), in the list's one query (``handlerrun_history_idx`` serves both)."""
        HandlerRun, IntegrationVersion = _model("HandlerRun"), _model("IntegrationVersion")
        newest = (IntegrationVersion.objects.available().filter(integration=OuterRef("version__integration"))
                  .order_by("-number").values("number")[:1])
        # No tie-break on pk: "-created_at" alone is handlerrun_history_idx's order after
        # instance_id, so each instance reads one index entry (with "-pk" PostgreSQL sorted
        # all of a busy instance's runs; bench/bench_instance_page.py).
        last = HandlerRun.objects.filter(instance=OuterRef("pk")).order_by("-created_at")
        return self.annotate(
            newest_available=Subquery(newest),
            last_run_status=Subquery(last.values("status")[:1]),
            last_run_created_at=Subquery(last.values("created_at")[:1]),
        )

    def with_data_flag(self, user: AnyUser) -> Self:
        """Each row annotated ``sees_data``: whether ``user`` sees its data, not only its
        support fields. The list form of ``access.sees_instance_data`` (members of the
        instance's organization in any role, and superusers), in the same query."""
        if user is not None and user.is_authenticated and user.is_superuser:
            return self.annotate(sees_data=models.Value(True, output_field=models.BooleanField()))
        if user is None or not user.is_authenticated:
            return self.annotate(sees_data=models.Value(False, output_field=models.BooleanField()))
        return self.annotate(sees_data=Q(organization__in=_organizations_of(user)))


class RunQuerySet(OrganizationRowsQuerySet):
    """Runs follow their instance: seen by its organization and the integration's
    publishers (``access.runs_with_details_for`` narrows to those whose details show);
    deleted (the only change) by the instance's organization."""

    organization_path = "instance__organization"
    publisher_path = "instance__version__integration__owner"

    def with_details_for(self, user: AnyUser) -> Self:
        """Runs whose input, result, logs and error texts ``user`` sees: those of their own
        organizations' instances, in any role (``access.sees_run_details``)."""
        return self.changeable_by(user)

    def for_listing(self) -> Self:
        return self.select_related("instance__version__integration")


class DeviceQuerySet(OrganizationRowsQuerySet):
    def for_listing(self) -> Self:
        return self.select_related("organization")


class ContainerEntryQuerySet(OrganizationRowsQuerySet):
    """Stored values are the instance's organization's alone: no publisher sees them."""

    organization_path = "instance__organization"

    def for_listing(self) -> Self:
        return self.select_related("instance__version__integration")


class CacheEntryQuerySet(OrganizationRowsQuerySet):
    """Cache entries belong to an organization directly (tenant entries have no instance)."""

    def for_listing(self) -> Self:
        return self.select_related("organization", "instance__version__integration")


class AttachmentQuerySet(PublisherRowsQuerySet):
    pass


class ApiSchemaQuerySet(PublisherRowsQuerySet):
    """API documents: visible with their integration, changed by its publishers."""


class ApiPartQuerySet(PublisherRowsQuerySet):
    """An API document's endpoints and models follow the document."""

    integration_path = "schema__integration"
