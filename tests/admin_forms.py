"""Posting Django admin change forms from tests: start from what the page rendered (main
form and every inline formset, management forms included) and override a few fields."""
from __future__ import annotations

from django import forms


def _encode(bound):
    field, value = bound.field, bound.value()
    if isinstance(field, forms.BooleanField):
        return "on" if value else None
    if isinstance(field, forms.JSONField) and not isinstance(value, str):
        return field.prepare_value(value)
    if isinstance(field, forms.FileField):
        return None
    return "" if value is None else value


def _add_form(data: dict, form) -> None:
    for name in form.fields:
        value = _encode(form[name])
        if value is not None:
            data[form.add_prefix(name)] = value


def change_form_data(response, **overrides) -> dict:
    """POST data for the admin change form ``response`` rendered, with ``overrides``."""
    data: dict = {}
    _add_form(data, response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        _add_form(data, formset.management_form)
        for form in formset.forms:
            _add_form(data, form)
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}
