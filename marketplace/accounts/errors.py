"""Domain errors on the account pages: NotFound is a 404 page, PermissionDenied a 403 one;
refusals of what the user asked (InvalidInput, Conflict) are shown as a message or on the
form's fields by the views themselves."""
from __future__ import annotations

import functools

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404

from ..exceptions import DomainError, NotFound, PermissionDenied


def as_http_errors(view):
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message) from None
        except PermissionDenied as exc:
            raise DjangoPermissionDenied(exc.message) from None

    return wrapper


def add_to_form(form, exc: DomainError) -> None:
    """Put the error's messages on the form's fields, the rest on the form itself."""
    for field, messages in exc.errors.items():
        for message in messages:
            form.add_error(field if field in form.fields else None, message)
