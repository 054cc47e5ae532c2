"""Organizations with their members, and the marketplace's categories. Publishers see
their own organizations; only superusers change memberships and categories."""
from __future__ import annotations

from django.contrib import admin
from django.db.models import Count

from ..models import Category, Membership, Organization
from .mixins import ScopedAdmin, ScopedInline


class MembershipInline(ScopedInline, admin.TabularInline):
    model = Membership
    fields = ["user", "role"]
    raw_id_fields = ["user"]
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(ScopedAdmin):
    publisher_actions = ()
    list_display = ["name", "slug", "members", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_members=Count("memberships"))

    @admin.display(description="members", ordering="n_members")
    def members(self, obj):
        return obj.n_members


@admin.register(Category)
class CategoryAdmin(ScopedAdmin):
    # Categories belong to the marketplace, not to an organization: everyone sees them all.
    belongs_to_organizations = False
    publisher_actions = ()
    list_display = ["name", "slug", "ordering", "integration_count"]
    list_editable = ["ordering"]
    search_fields = ["name", "description"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_integrations=Count("integrations"))

    @admin.display(description="integrations", ordering="n_integrations")
    def integration_count(self, obj):
        return obj.n_integrations
