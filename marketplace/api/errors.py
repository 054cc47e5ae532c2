"""Maps domain errors to HTTP: 400/403/404/409 with ``{field: [messages]}``."""
from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..exceptions import DomainError


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = DomainError.from_validation_error(exc)
    if isinstance(exc, DomainError):
        body = {("non_field_errors" if k == "__all__" else k): v for k, v in exc.errors.items()}
        return Response(body, status=exc.status_code)
    return drf_exception_handler(exc, context)
