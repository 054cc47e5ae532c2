"""What every console page shares: access by membership role.

Access: a staff user sees the console when they are a superuser or hold a publishing role
(owner or publisher) in some organization. Django's per-model permissions are not
consulted, so no grants or data migration are needed; the role is the permission. Which
rows a page lists and which it changes are the domain's named queries
(``marketplace/querysets.py``: ``visible_to``, ``changeable_by``), asked with the
publishing roles only (``CONSOLE_ROLES``): the console is the publishers' tool, so a plain
membership opens none of its rows.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.http import Http404

from .. import access
from ..exceptions import DomainError
from ..models import Device, Instance, Integration, IntegrationVersion, Organization

# The memberships that count in the console.
CONSOLE_ROLES = access.PUBLISHING_ROLES


def publishing_org_ids(request) -> frozenset[int]:
    """The organizations where the user publishes, computed once per request."""
    cached = getattr(request, "_junction_publishing_orgs", None)
    if cached is None:
        orgs = access.organizations_of(request.user, access.PUBLISHING_ROLES)
        cached = frozenset(orgs.values_list("pk", flat=True))
        request._junction_publishing_orgs = cached
    return cached


def is_publisher(request) -> bool:
    user = request.user
    if not (user.is_active and user.is_staff):
        return False
    return user.is_superuser or bool(publishing_org_ids(request))


# Foreign keys to these models only offer the rows the user may change.
CHOICES = {
    Organization: lambda user: Organization.objects.visible_to(user, roles=CONSOLE_ROLES),
    Integration: lambda user: Integration.objects.editable_by(user),
    IntegrationVersion: lambda user: IntegrationVersion.objects.editable_by(user),
    Device: lambda user: Device.objects.changeable_by(user, roles=CONSOLE_ROLES),
    Instance: lambda user: Instance.objects.changeable_by(user, roles=CONSOLE_ROLES),
}


def limit_choices(request, db_field, kwargs: dict) -> dict:
    choices = CHOICES.get(db_field.related_model)
    if choices and not request.user.is_superuser and "queryset" not in kwargs:
        kwargs["queryset"] = choices(request.user)
    return kwargs


def report(request, error: DomainError, prefix: str = "") -> None:
    """A service's refusal as an admin message, each message once."""
    for text in dict.fromkeys(m for ms in error.errors.values() for m in ms):
        messages.error(request, f"{prefix}{text}")


class ScopedAdmin(admin.ModelAdmin):
    """Org-scoped querysets, role-based permissions and limited foreign-key choices.

    ``visible_rows`` and ``changeable_rows`` name the domain's queries a page starts from
    (the model's ``visible_to`` and ``changeable_by`` unless overridden).
    ``publisher_actions`` lists what a non-superuser publisher may do beyond viewing
    (``add``, ``change``, ``delete``); superusers may do all of it except what
    ``closed_to_everyone`` names.
    """

    publisher_actions: tuple[str, ...] = ("add", "change", "delete")
    closed_to_everyone: tuple[str, ...] = ()
    # Lists preload what their rows show through their queryset's ``for_listing()`` (in
    # ``get_queryset``), so the number of queries stays constant however long they get;
    # Django's own guess (every foreign key, five levels deep) is not asked for.
    list_select_related: tuple[str, ...] | list[str] = ()
    # False for marketplace-wide rows (categories) that every publisher sees.
    belongs_to_organizations = True

    class Media:
        css = {"all": ["css/admin.css"]}

    def visible_rows(self, request, queryset):
        return queryset.visible_to(request.user, roles=CONSOLE_ROLES)

    def changeable_rows(self, request, queryset):
        return queryset.changeable_by(request.user, roles=CONSOLE_ROLES)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return self.visible_rows(request, queryset) if self.belongs_to_organizations else queryset

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None and not request.user.is_superuser:
            # Another organization's row and a missing row look the same: not found.
            raise Http404(f"No {self.opts.verbose_name} with id {object_id} in your organizations.")
        return obj

    def in_scope(self, request, obj, change: bool) -> bool:
        if request.user.is_superuser or not self.belongs_to_organizations:
            return True
        cache = request.__dict__.setdefault("_junction_scope_cache", {})
        key = (self.model, obj.pk, change)
        if key not in cache:
            rows = self.model._default_manager.filter(pk=obj.pk)
            rows = self.changeable_rows(request, rows) if change else self.visible_rows(request, rows)
            cache[key] = rows.exists()
        return cache[key]

    def may(self, request, operation: str, obj=None) -> bool:
        if operation in self.closed_to_everyone or not is_publisher(request):
            return False
        if not request.user.is_superuser and operation != "view" and operation not in self.publisher_actions:
            return False
        if obj is None:
            return True
        return self.in_scope(request, obj, change=operation != "view")

    def has_module_permission(self, request):
        return is_publisher(request)

    def has_view_permission(self, request, obj=None):
        return self.may(request, "view", obj)

    def has_add_permission(self, request):
        return self.may(request, "add")

    def has_change_permission(self, request, obj=None):
        return self.may(request, "change", obj)

    def has_delete_permission(self, request, obj=None):
        return self.may(request, "delete", obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return super().formfield_for_foreignkey(db_field, request, **limit_choices(request, db_field, kwargs))


class PublisherRowsAdmin(ScopedAdmin):
    """Rows of the publisher's side (what hangs off an integration): listed and changed
    alike, for the integration's own publishers."""

    def visible_rows(self, request, queryset):
        return queryset.changeable_by(request.user)

    changeable_rows = visible_rows


class ScopedInline:
    """Inlines follow their parent page: visible with it, and changeable per
    ``publisher_actions`` (the parent admin already checked the parent's scope)."""

    publisher_actions: tuple[str, ...] = ()
    superuser_actions: tuple[str, ...] = ("add", "change", "delete")

    def _may(self, request, operation: str) -> bool:
        if not is_publisher(request):
            return False
        if operation == "view":
            return True
        allowed = self.superuser_actions if request.user.is_superuser else self.publisher_actions
        return operation in allowed

    def has_view_permission(self, request, obj=None):
        return self._may(request, "view")

    def has_add_permission(self, request, obj=None):
        return self._may(request, "add")

    def has_change_permission(self, request, obj=None):
        return self._may(request, "change")

    def has_delete_permission(self, request, obj=None):
        return self._may(request, "delete")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return super().formfield_for_foreignkey(db_field, request, **limit_choices(request, db_field, kwargs))
