"""Domain errors raised by services. The console maps them to messages and form errors;
``marketplace.api.errors`` maps them to HTTP statuses for the REST API, in the one error
shape, ``code`` naming the kind of refusal.

Every error carries ``errors``: a mapping of field name to messages, so each refusal
can be tied to the field that caused it (``"__all__"`` when none applies).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError

if TYPE_CHECKING:
    from .packaging.report import Report


class DomainError(Exception):
    status_code = 400
    code = "invalid"
    # More for API callers, added to the error body as it is (e.g. {"report": {...}}).
    detail: dict[str, Any] | None = None

    def __init__(self, message: str | None = None, *, field: str | None = None, errors: dict[str, Any] | None = None) -> None:
        if errors is None:
            errors = {field or "__all__": [message]}
        self.errors: dict[str, list[str]] = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in errors.items()}
        self.message = message or "; ".join(f"{k}: {m}" if k != "__all__" else m for k, ms in self.errors.items() for m in ms)
        super().__init__(self.message)

    @classmethod
    def from_validation_error(cls, exc: ValidationError) -> DomainError:
        if hasattr(exc, "error_dict"):
            return cls(errors={k: [m for e in v for m in e.messages] for k, v in exc.error_dict.items()})
        return cls(errors={"__all__": exc.messages})

    def as_validation_error(self) -> ValidationError:
        return ValidationError({k: v for k, v in self.errors.items()})


class InvalidInput(DomainError):
    """The caller sent something that breaks a rule; nothing was written."""


class NotPublishable(InvalidInput):
    """Validation found errors in the draft, so it cannot be published. ``errors`` key each
    error by where it is (``Report.error_dict``); ``report`` is the whole validation report,
    warnings included, and travels to API callers as ``detail``."""

    status_code = 409
    code = "not_publishable"

    def __init__(self, message: str | None = None, *, report: Report, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.report = report
        self.detail = {"report": report.as_dict()}


class TooLarge(InvalidInput):
    """An upload is larger than the platform accepts (a package past its size limits);
    nothing was written. ``detail`` may carry the refusal as a validation report."""

    status_code = 413
    code = "too_large"


class NotInstallable(DomainError):
    """The version cannot be installed (draft, or marked unavailable)."""

    status_code = 409
    code = "not_installable"


class ImmutableVersion(DomainError):
    """A published version's content, number and notes never change."""

    status_code = 409
    code = "immutable_version"


class Conflict(DomainError):
    """The operation lost a race or meets a state that forbids it; retrying may help."""

    status_code = 409
    code = "conflict"


class PermissionDenied(DomainError):
    status_code = 403
    code = "permission_denied"


class NotFound(DomainError):
    """No such object among those the caller may reach: another organization's object
    and a missing one are refused alike, so no front door tells them apart."""

    status_code = 404
    code = "not_found"


class QuotaExceeded(DomainError):
    """A quota or cap would be exceeded (e.g. an instance's queued runs); nothing was
    written, and the same call may succeed later. ``code`` names the cap (docs/quotas.md)."""

    status_code = 429

    def __init__(self, message: str | None = None, *, code: str = "quota_exceeded", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.code = code
