"""Forms of the customers' install and device pages.

``ConfigForm`` is built from a version's configSchema: one field per property, named by
its path as the install service names its errors (``config.site``, ``config.smtp.port``),
so a refusal lands on the field it is about (``formerrors.add_refusal``). The form only
turns what was typed into JSON values; whether they are right is the service's
``validate_config``, the one check every front door runs. A value that cannot even be
read as its type (``abc`` for an integer) is the form's own error.

Secrets (``format: password`` or ``writeOnly``) are password inputs that are never
rendered back: an empty one is left out, so the service keeps the stored value where
there is one.
"""
from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from ..choices import ResourceKind
from ..models import Device
from ..validators import secret_fields

MAX_DEPTH = 5  # nested objects shown as fieldsets; deeper ones are refused by publishing anyway


def _label(name: str, spec: dict, required: bool) -> str:
    label = str(spec.get("title") or name.replace("_", " ").replace("-", " ").strip().capitalize())
    return f"{label} (required)" if required else label


def _is_secret(spec: dict) -> bool:
    return spec.get("format") == "password" or spec.get("writeOnly") is True


class ListField(forms.CharField):
    """An array of scalars typed one item per line."""

    widget = forms.Textarea(attrs={"rows": 3})

    def __init__(self, *, item_type: str = "string", **kwargs: Any) -> None:
        self.item_type = item_type
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list | None:
        text = super().to_python(value)
        if not text:
            return None
        items = [line.strip() for line in str(text).splitlines() if line.strip()]
        return [_scalar(item, self.item_type) for item in items]


def _scalar(text: str, kind: str) -> Any:
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValidationError(f"{text!r} is not a whole number") from None
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            raise ValidationError(f"{text!r} is not a number") from None
        return int(number) if number.is_integer() else number
    if kind == "boolean":
        lowered = text.lower()
        if lowered not in {"true", "false"}:
            raise ValidationError(f"{text!r} is not true or false")
        return lowered == "true"
    return text


class NumberField(forms.CharField):
    """A JSON number: an integer stays an integer (``5``, not ``5.0``)."""

    def __init__(self, *, kind: str, **kwargs: Any) -> None:
        self.kind = kind
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "numeric" if kind == "integer" else "decimal"}))
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        return _scalar(text, self.kind) if text else None


def _enum_field(spec: dict, values: list, *, label: str, help_text: str, required: bool, multiple: bool = False):
    choices = [(json.dumps(v), str(v)) for v in values]
    if multiple:
        return forms.TypedMultipleChoiceField(
            choices=choices, coerce=json.loads, required=False, label=label, help_text=help_text,
            widget=forms.CheckboxSelectMultiple,
        )
    if "default" not in spec:  # with a default, an empty choice would only mean the default
        choices = [("", "—")] + choices
    return forms.TypedChoiceField(
        choices=choices, coerce=json.loads, empty_value=None, required=False, label=label, help_text=help_text
    )


def build_field(name: str, spec: dict, *, required: bool) -> forms.Field | None:
    """The form field for one scalar or array property; None for an object (a fieldset)."""
    kind = spec.get("type")
    label, help_text = _label(name, spec, required), str(spec.get("description") or "")
    common: dict[str, Any] = {"label": label, "help_text": help_text, "required": False}
    if isinstance(spec.get("enum"), list):
        return _enum_field(spec, spec["enum"], label=label, help_text=help_text, required=required)
    if kind == "object":
        return None
    if kind == "boolean":
        return forms.BooleanField(**common)
    if kind in ("integer", "number"):
        return NumberField(kind=kind, **common)
    if kind == "array":
        items = spec.get("items") if isinstance(spec.get("items"), dict) else {}
        if isinstance(items.get("enum"), list):
            return _enum_field(items, items["enum"], label=label, help_text=help_text, required=required, multiple=True)
        item_type = items.get("type") if items.get("type") in ("string", "integer", "number", "boolean") else "string"
        common["help_text"] = (help_text + " " if help_text else "") + "One per line."
        return ListField(item_type=item_type, **common)
    if _is_secret(spec):
        return forms.CharField(strip=False, widget=forms.PasswordInput(render_value=False,
                                                                       attrs={"autocomplete": "new-password"}), **common)
    max_length = spec.get("maxLength")
    if (isinstance(max_length, int) and max_length > 200) or spec.get("format") == "textarea":
        return forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), **common)
    return forms.CharField(**common)


class DevicePicker(forms.ChoiceField):
    """A select of the organization's devices of one kind. Which device may be bound is
    the install service's rule (``bindings.<alias>`` errors), so any id is passed on."""

    def valid_value(self, value: Any) -> bool:
        return str(value).isdigit()


class Group:
    """A nested object's fieldset: its legend and the fields (and groups) inside."""

    is_group = True  # what the template tells it from a bound field by

    def __init__(self, path: str, legend: str, description: str) -> None:
        self.path, self.legend, self.description = path, legend, description
        self.items: list = []  # BoundField or Group, in the schema's order


class ConfigForm(forms.Form):
    """The fields of a configSchema, plus the instance name and one device picker per
    declared resource (``bindings.<alias>``), whose choices are ``devices`` of its kind."""

    def __init__(self, *args: Any, schema: dict, resources: dict | None = None, devices: list[Device] = (),
                 initial_name: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schema = schema if isinstance(schema, dict) else {}
        self.secrets = secret_fields(self.schema)
        self.fields["name"] = forms.CharField(
            label="Instance name", required=False, initial=initial_name,
            help_text="How this installation is called in your organization; defaults to the integration's name.",
        )
        self._paths: dict[str, dict] = {}
        self.layout = self._add_properties("config", self.schema, depth=0)
        self.resources = resources or {}
        for alias, spec in self.resources.items():
            spec = spec if isinstance(spec, dict) else {}
            kind = spec.get("kind")
            choices = [("", "— choose a device —")] + [(str(d.pk), f"{d.name} · {d.target}") for d in devices
                                                         if d.kind == kind]
            self.fields[f"bindings.{alias}"] = DevicePicker(
                label=f"Device for “{alias}” ({ResourceKind(kind).label if kind in ResourceKind.values else kind})",
                help_text=str(spec.get("description") or ""), choices=choices, required=False,
            )

    def _add_properties(self, path: str, schema: dict, depth: int) -> list:
        items: list = []
        required = set(schema.get("required") or [])
        for name, spec in (schema.get("properties") or {}).items():
            if not isinstance(spec, dict):
                continue
            key = f"{path}.{name}"
            is_required = name in required
            field = build_field(name, spec, required=is_required)
            if field is None:
                if depth + 1 >= MAX_DEPTH:
                    continue
                group = Group(key, _label(name, spec, is_required), str(spec.get("description") or ""))
                group.items = self._add_properties(key, spec, depth + 1)
                self._paths[key] = {"object": True, "required": is_required}
                items.append(group)
                continue
            if "default" in spec and not _is_secret(spec):
                field.initial = spec["default"] if not isinstance(field, forms.TypedChoiceField) else json.dumps(spec["default"])
            if is_required:
                field.widget.attrs["aria-required"] = "true"
            self.fields[key] = field
            self._paths[key] = {"object": False, "required": is_required}
            items.append(key)
        return items

    def sections(self) -> list:
        """The layout with bound fields, for the template."""
        def bind(items: list) -> list:
            bound = []
            for item in items:
                if isinstance(item, Group):
                    group = Group(item.path, item.legend, item.description)
                    group.items = bind(item.items)
                    bound.append(group)
                else:
                    bound.append(self[item])
            return bound
        return bind(self.layout)

    def binding_fields(self) -> list[dict]:
        """Per declared resource: its picker, alias and kind, for the template."""
        return [
            {"field": self[f"bindings.{alias}"], "alias": alias,
             "kind": spec.get("kind") if isinstance(spec, dict) else None}
            for alias, spec in self.resources.items()
        ]

    def refusal_field(self, key: str) -> str | None:
        """The field of an error key: itself, or the nearest field above it
        (``config.tags.2`` is the tags field); a nested object's own error (a missing
        required property) goes to that property's field when it has one."""
        parts = key.split(".")
        while parts:
            candidate = ".".join(parts)
            if candidate in self.fields:
                return candidate
            parts.pop()
        return None

    def config(self) -> dict:
        """The JSON config typed in (call after ``is_valid``): empty fields are left out,
        so the schema's defaults and the stored secrets apply."""
        return self._collect("config", self.schema)

    def _collect(self, path: str, schema: dict) -> dict:
        values: dict[str, Any] = {}
        for name, spec in (schema.get("properties") or {}).items():
            key = f"{path}.{name}"
            info = self._paths.get(key)
            if info is None:
                continue
            if info["object"]:
                inner = self._collect(key, spec)
                if inner or info["required"]:
                    values[name] = inner
                continue
            value = self.cleaned_data.get(key)
            if isinstance(self.fields[key], forms.BooleanField):
                values[name] = bool(value)
            elif value not in (None, "", []):
                values[name] = value
        return values

    def bindings(self) -> dict[str, int]:
        return {
            name.split(".", 1)[1]: int(value) for name in self.fields if name.startswith("bindings.")
            and (value := self.cleaned_data.get(name))
        }


class DeviceForm(forms.Form):
    """A device of one kind: base URL for HTTP, DSN for SQL. Credentials and headers are
    write-only: left empty, what is stored stays; "remove" clears it."""

    name = forms.CharField(label="Device name", max_length=120)
    base_url = forms.CharField(label="Base URL", required=False, max_length=200,
                               help_text="Scheme, host, port and optional base path, e.g. https://erp.example.com/api/",
                               widget=forms.URLInput())
    dsn = forms.CharField(
        label="DSN", required=False, max_length=500,
        help_text="postgresql://user:password@host/db, or sqlite:///name.sqlite3 for a file in your organization's "
                  "device folder. A password shown as ******** is kept.",
    )
    token = forms.CharField(label="Bearer token", required=False, strip=False,
                            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                            help_text="Sent as Authorization: Bearer. Never shown again.")
    username = forms.CharField(label="Username", required=False, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    password = forms.CharField(label="Password", required=False, strip=False,
                               widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}))
    headers = forms.CharField(label="Headers", required=False, widget=forms.Textarea(attrs={"rows": 3}),
                              help_text="One per line, as Name: value. Never shown again.")
    clear_credentials = forms.BooleanField(label="Remove the stored credentials", required=False)
    clear_headers = forms.BooleanField(label="Remove the stored headers", required=False)

    def __init__(self, *args: Any, kind: str, editing: bool = False, organizations: list | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        if kind == ResourceKind.HTTP:
            del self.fields["dsn"]
            self.fields["base_url"].required = True
        else:
            del self.fields["base_url"], self.fields["headers"], self.fields["clear_headers"], self.fields["token"]
            self.fields["dsn"].required = True
            self.fields["username"].help_text = "Overrides the DSN's user when set."
        if not editing:
            self.fields.pop("clear_credentials", None)
            self.fields.pop("clear_headers", None)
        if organizations and len(organizations) > 1:
            self.fields["organization"] = forms.ChoiceField(
                label="Organization", choices=[(o.slug, o.name) for o in organizations],
            )
            self.order_fields(["organization"])

    def clean_headers(self) -> dict | None:
        text = self.cleaned_data.get("headers") or ""
        headers: dict[str, str] = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise ValidationError(f"{line.strip()[:40]!r} is not Name: value")
            headers[name.strip()] = value.strip()
        return headers or None

    def credentials_value(self) -> dict | None:
        """The credentials to store: None keeps them, ``{}`` clears them."""
        data = self.cleaned_data
        given = {k: data[k] for k in ("token", "username", "password") if data.get(k)}
        if given:
            return given
        return {} if data.get("clear_credentials") else None

    def headers_value(self) -> dict | None:
        if self.cleaned_data.get("headers"):
            return self.cleaned_data["headers"]
        return {} if self.cleaned_data.get("clear_headers") else None
