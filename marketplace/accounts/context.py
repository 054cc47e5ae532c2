"""What every page's navigation needs to know about the visitor."""
from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from ..models import Organization


def navigation(request) -> dict:
    """``nav_organizations``: the organizations the visitor belongs to, queried only by
    a page that shows them."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"nav_organizations": SimpleLazyObject(lambda: list(Organization.objects.joined_by(user).order_by("name")))}
