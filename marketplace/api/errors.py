"""One error shape for every API answer that is not a success:

    {"error": {"code": "...", "message": "...", "fields": {"field": ["..."]}}}

``fields`` only for validation errors. Domain errors (``marketplace.exceptions``) bring their
status and field messages; DRF's own (authentication, throttling, parsing, 404) their status
and code. A domain error may carry ``detail`` (e.g. publishing's validation report), which is
added to the error object as it is."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import set_rollback

from ..exceptions import DomainError

NON_FIELD = "non_field_errors"


class ErrorBody(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable: invalid, not_authenticated, not_found, conflict, throttled, …")
    message = serializers.CharField(help_text="What went wrong, for a person.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False,
        help_text="Validation errors only: each field's messages (nested fields joined with dots).",
    )


class Error(serializers.Serializer):
    """The body of every error response."""

    error = ErrorBody()


def error_response(status: int, code: str, message: str, fields: dict | None = None, headers: dict | None = None,
                   extra: dict | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    if extra:
        body.update(extra)
    return Response({"error": body}, status=status, headers=headers)


def flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error details as ``{"a.b": [messages]}``; "__all__" and DRF's
    non-field key both become ``non_field_errors``."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            key = NON_FIELD if key in ("__all__", NON_FIELD) and not prefix else str(key)
            for name, messages in flatten(value, f"{prefix}.{key}" if prefix else key).items():
                out.setdefault(name, []).extend(messages)
        return out
    if isinstance(detail, (list, tuple)):
        if all(not isinstance(d, (dict, list, tuple)) for d in detail):
            return {prefix or NON_FIELD: [str(d) for d in detail]}
        out = {}
        for index, item in enumerate(detail):
            for name, messages in flatten(item, f"{prefix}.{index}" if prefix else str(index)).items():
                out.setdefault(name, []).extend(messages)
        return out
    return {prefix or NON_FIELD: [str(detail)]}


def _summary(fields: dict[str, list[str]]) -> str:
    name, messages = next(iter(fields.items()))
    first = messages[0] if messages else "invalid"
    return first if name == NON_FIELD else f"{name}: {first}"


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = DomainError.from_validation_error(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, DomainError):
        set_rollback()
        fields = flatten(exc.errors) if exc.status_code == 400 else None
        message = _summary(fields) if fields else exc.message
        return error_response(exc.status_code, exc.code, message, fields, extra=getattr(exc, "detail", None))

    if isinstance(exc, exceptions.APIException):
        set_rollback()
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(max(1, int(exc.wait + 0.999)))
        if isinstance(exc, exceptions.ValidationError):
            fields = flatten(exc.detail)
            return error_response(exc.status_code, "invalid", _summary(fields), fields, headers)
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        return error_response(exc.status_code, str(code), str(exc.detail), headers=headers)
    return None
