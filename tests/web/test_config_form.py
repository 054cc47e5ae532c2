"""The configSchema form builder: one field per property of each type, named by the path
the install service gives its errors, and the JSON config read back from what was typed."""
from __future__ import annotations

from django import forms

from marketplace.exceptions import InvalidInput
from marketplace.formerrors import add_refusal
from marketplace.web.forms import ConfigForm

SCHEMA = {
    "type": "object",
    "required": ["site", "apiKey"],
    "properties": {
        "site": {"type": "string", "title": "Site name", "description": "Where the printers are"},
        "apiKey": {"type": "string", "format": "password"},
        "token": {"type": "string", "writeOnly": True, "default": "never-shown"},
        "interval": {"type": "integer", "default": 5},
        "ratio": {"type": "number"},
        "dryRun": {"type": "boolean", "default": True},
        "mode": {"enum": ["fast", "safe"], "default": "safe"},
        "level": {"type": "integer", "enum": [1, 2, 3]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "ports": {"type": "array", "items": {"type": "integer"}},
        "days": {"type": "array", "items": {"enum": ["mon", "tue"]}},
        "smtp": {
            "type": "object", "title": "Mail server", "required": ["host"],
            "properties": {"host": {"type": "string"}, "port": {"type": "integer", "default": 25}},
        },
    },
}


def form(data=None, **kw):
    return ConfigForm(data, schema=SCHEMA, **kw)


def test_each_schema_type_has_its_field():
    f = form()
    assert isinstance(f.fields["config.site"], forms.CharField)
    assert f.fields["config.site"].label == "Site name (required)"
    assert f.fields["config.site"].help_text == "Where the printers are"
    assert isinstance(f.fields["config.apiKey"].widget, forms.PasswordInput)
    assert isinstance(f.fields["config.token"].widget, forms.PasswordInput)
    assert f.fields["config.interval"].initial == 5
    assert isinstance(f.fields["config.dryRun"], forms.BooleanField) and f.fields["config.dryRun"].initial is True
    assert isinstance(f.fields["config.mode"], forms.TypedChoiceField)
    assert [c[1] for c in f.fields["config.mode"].choices] == ["fast", "safe"]
    assert f.fields["config.level"].choices[0] == ("", "—")
    assert isinstance(f.fields["config.tags"].widget, forms.Textarea)
    assert isinstance(f.fields["config.days"], forms.TypedMultipleChoiceField)
    assert "config.smtp.host" in f.fields and "config.smtp.port" in f.fields
    group = next(item for item in f.sections() if getattr(item, "is_group", False))
    assert group.legend == "Mail server" and [b.name for b in group.items] == ["config.smtp.host", "config.smtp.port"]


def test_secrets_are_never_rendered_back():
    f = form({"config.apiKey": "hunter2-secret", "config.token": "tok-secret"})
    html = str(f["config.apiKey"]) + str(f["config.token"])
    assert "hunter2-secret" not in html and "tok-secret" not in html and "never-shown" not in html


def test_typed_values_become_json():
    f = form({
        "config.site": " Plant 1 ", "config.apiKey": "k", "config.interval": "10", "config.ratio": "2.5",
        "config.dryRun": "", "config.mode": '"fast"', "config.level": "2", "config.tags": "a\n\nb\n",
        "config.ports": "80\n443", "config.days": ['"mon"'], "config.smtp.host": "mail", "config.smtp.port": "",
    })
    assert f.is_valid(), f.errors
    assert f.config() == {
        "site": "Plant 1", "apiKey": "k", "interval": 10, "ratio": 2.5, "dryRun": False, "mode": "fast",
        "level": 2, "tags": ["a", "b"], "ports": [80, 443], "days": ["mon"], "smtp": {"host": "mail"},
    }


def test_empty_fields_are_left_out_so_defaults_and_stored_secrets_apply():
    f = form({})
    assert f.is_valid()
    assert f.config() == {"dryRun": False}


def test_a_value_that_is_not_its_type_is_the_forms_error():
    f = form({"config.interval": "abc", "config.ports": "80\nx"})
    assert not f.is_valid()
    assert "'abc' is not a whole number" in f.errors["config.interval"][0]
    assert "'x' is not a whole number" in f.errors["config.ports"][0]


def test_service_errors_land_on_the_field_they_name():
    f = form({})
    assert f.is_valid()
    add_refusal(f, InvalidInput(errors={
        "config.site": ["this field is required"], "config.tags.1": ["too long"],
        "config.smtp.host": ["this field is required"], "version": ["marked unavailable"],
    }))
    assert f.errors["config.site"] == ["this field is required"]
    assert f.errors["config.tags"] == ["too long"]
    assert f.errors["config.smtp.host"] == ["this field is required"]
    assert f.non_field_errors() == ["marked unavailable"]


def test_device_pickers_offer_the_devices_of_the_resources_kind(acme):
    from tests import factories

    web = factories.make_device(acme, "http", name="Printer")
    db = factories.make_device(acme, "sql", name="ERP")
    f = ConfigForm({"bindings.printer": str(web.pk), "bindings.erp": str(db.pk)}, schema={},
                   resources={"printer": {"kind": "http"}, "erp": {"kind": "sql", "description": "Orders"}},
                   devices=[web, db])
    assert [c[0] for c in f.fields["bindings.printer"].choices] == ["", str(web.pk)]
    assert f.fields["bindings.erp"].help_text == "Orders"
    assert f.is_valid()
    assert f.bindings() == {"printer": web.pk, "erp": db.pk}
