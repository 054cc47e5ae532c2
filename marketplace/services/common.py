"""Small helpers shared by the services."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Model

from ..exceptions import InvalidInput


def full_clean(obj: Model, **kwargs: Any) -> None:
    """Model validation, with Django's ValidationError turned into the domain's InvalidInput."""
    try:
        obj.full_clean(**kwargs)
    except ValidationError as exc:
        raise InvalidInput.from_validation_error(exc) from None
