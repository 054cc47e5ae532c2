"""Creating integrations, giving them unique slugs, and editing what the catalog shows of them."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from .. import access
from ..choices import Visibility
from ..exceptions import InvalidInput
from ..models import Category, Integration, Organization
from .common import full_clean

if TYPE_CHECKING:
    from ..querysets import AnyUser


def unique_slug(name: str, *, exclude_pk: int | None = None) -> str:
    base = slugify(name)[:100] or "integration"
    slug, n = base, 2
    taken = Integration.objects.exclude(pk=exclude_pk)
    while taken.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def create_integration(
    *,
    organization: Organization,
    name: str,
    summary: str = "",
    description: str = "",
    category: Category | None = None,
    visibility: str = Visibility.PUBLIC,
    slug: str | None = None,
    user: AnyUser = None,
) -> Integration:
    """Create an integration owned by ``organization`` (no versions yet)."""
    access.require_role(user, organization, access.PUBLISHING_ROLES)
    name = (name or "").strip()
    if not name:
        raise InvalidInput("a name is required", field="name")
    if Integration.objects.filter(owner=organization, name=name).exists():
        raise InvalidInput(f"{organization} already has an integration named {name!r}", field="name")
    if slug and Integration.objects.filter(slug=slug).exists():
        raise InvalidInput(f"the slug {slug!r} is taken", field="slug")
    integration = Integration(
        owner=organization, name=name, slug=slug or unique_slug(name), summary=summary,
        description=description, category=category, visibility=visibility,
    )
    # Uniqueness is checked above with the domain's messages, and the constraints back it up
    # below; full_clean's own unique checks would turn a lost race into a '__all__' error.
    full_clean(integration, validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            integration.save()
    except IntegrityError:
        raise InvalidInput(f"the name {name!r} or slug {integration.slug!r} was just taken", field="name") from None
    return integration


# Marks the fields a caller leaves as they are (``None`` is a value: no category).
# Typed Any so that the parameters defaulting to it keep the type a caller passes.
UNCHANGED: Any = object()


@transaction.atomic
def update_integration(
    *,
    integration: Integration,
    user: AnyUser,
    name: str | None = UNCHANGED,
    summary: str = UNCHANGED,
    description: str = UNCHANGED,
    category: Category | None = UNCHANGED,
    visibility: str = UNCHANGED,
) -> Integration:
    """Change what the catalog shows of ``integration``: its name, summary, description,
    category and visibility; fields not given stay. Owners and publishers of its
    organization only (PermissionDenied). The slug, the owner and the icon do not change
    here (the icon: ``media.set_icon``). Raises InvalidInput keyed by field."""
    access.require_can_publish(user, integration)
    integration = Integration.objects.select_for_update().get(pk=integration.pk)
    if name is not UNCHANGED:
        name = (name or "").strip()
        if not name:
            raise InvalidInput("a name is required", field="name")
        taken = Integration.objects.filter(owner_id=integration.owner_id, name=name).exclude(pk=integration.pk)
        if taken.exists():
            raise InvalidInput(f"{integration.owner} already has an integration named {name!r}", field="name")
        integration.name = name
    changes = {"summary": summary, "description": description, "category": category, "visibility": visibility}
    for field, value in changes.items():
        if value is not UNCHANGED:
            setattr(integration, field, value)
    # As in create_integration: uniqueness above, with the domain's message; the constraint
    # is the backstop for a lost race.
    full_clean(integration, validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            integration.save()
    except IntegrityError:
        raise InvalidInput(f"the name {integration.name!r} was just taken", field="name") from None
    return integration
