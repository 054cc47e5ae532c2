"""A service's refusal shown on a form: every front door with forms (the console and
the customers' pages) puts a ``DomainError``'s ``errors`` on the fields they name the same way.

Error keys are the service's field names (``name``, ``icon``, ``files.main.lua``,
``bindings.erp``); a form maps them to its own fields with ``field_aliases`` (first part
of the key → field) or, for keys it must parse, a ``refusal_field(key)`` method. Keys no
field takes go on top of the form, prefixed with the key so they still say what they are
about.
"""
from __future__ import annotations

from django import forms

from .exceptions import DomainError


def error_field(form: forms.BaseForm, key: str) -> tuple[str | None, bool]:
    """The field of ``form`` an error key belongs to (None: the form's top), and whether
    the message reads on its own there (else it is prefixed with the key)."""
    custom = getattr(form, "refusal_field", None)
    field = custom(key) if custom else None
    exact = field is not None or key == "__all__"
    if field is None:
        head = key.split(".")[0]
        field = getattr(form, "field_aliases", {}).get(head, head)
        exact = exact or head == key
    return (field if field in form.fields else None), exact


def add_errors(form: forms.BaseForm, errors: dict[str, list[str]]) -> None:
    """Put ``errors`` (a DomainError's ``errors``) on ``form``'s fields."""
    for key, texts in errors.items():
        field, exact = error_field(form, key)
        for text in texts:
            form.add_error(field, text if exact else f"{key}: {text}")


def add_refusal(form: forms.BaseForm, error: DomainError) -> None:
    """``except DomainError as exc: add_refusal(form, exc)`` after a service call."""
    add_errors(form, error.errors)


class RefusalErrorsMixin:
    """For forms validated again after a service refused them (the console re-renders
    the change form after rolling back): ``domain_errors`` are added in ``clean``."""

    # Set by with_refusal(). ``field_aliases`` is read from the form class, which comes
    # after this mixin in the MRO, so the mixin must not define it.
    domain_errors: dict[str, list[str]] = {}

    def clean(self):
        cleaned = super().clean()
        add_errors(self, self.domain_errors)
        return cleaned


def with_refusal(form_class: type[forms.BaseForm], errors: dict) -> type[forms.BaseForm]:
    """``form_class`` that shows ``errors`` (a DomainError's) on its fields once validated."""
    return type(form_class.__name__, (RefusalErrorsMixin, form_class), {"domain_errors": errors})
