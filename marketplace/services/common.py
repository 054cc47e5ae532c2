"""Small helpers shared by the services."""
from __future__ import annotations

from django.core.exceptions import ValidationError

from ..exceptions import InvalidInput


def full_clean(obj, **kwargs) -> None:
    """Model validation, with Django's ValidationError turned into the domain's InvalidInput."""
    try:
        obj.full_clean(**kwargs)
    except ValidationError as exc:
        raise InvalidInput.from_validation_error(exc) from None
