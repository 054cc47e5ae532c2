"""marketplace.formerrors: a service's refusal lands on the field it names, on any form."""
from __future__ import annotations

from django import forms

from marketplace.exceptions import InvalidInput
from marketplace.formerrors import add_refusal


class BundleForm(forms.Form):
    title = forms.CharField(required=False)
    upload_icon = forms.FileField(required=False)
    main_source = forms.CharField(required=False)
    field_aliases = {"icon": "upload_icon"}

    def refusal_field(self, key: str) -> str | None:
        return "main_source" if key == "files.main.lua" else None


def test_each_key_finds_its_field_and_the_rest_goes_on_top():
    form = BundleForm(data={})
    assert form.is_valid()

    add_refusal(form, InvalidInput(errors={
        "title": ["too long"], "icon": ["must be square"], "files.main.lua": ["syntax error"],
        "config.site": ["required"], "__all__": ["try again"],
    }))

    assert form.errors["title"] == ["too long"]
    assert form.errors["upload_icon"] == ["must be square"]
    assert form.errors["main_source"] == ["syntax error"]
    assert form.non_field_errors() == ["config.site: required", "try again"]
