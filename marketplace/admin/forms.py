"""Forms of the console. Field validation uses ``marketplace.validators``, so a refusal
reads the same here as in the models; the services re-check everything on save."""
from __future__ import annotations

import json

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from .. import jsonvalues
from ..choices import ResourceKind
from ..models import ApiSchema, Attachment, Device, Instance, Integration, IntegrationVersion, Organization
from ..validators import SECRET_MASK, masked_dsn, validate_attachment, validate_icon


class CodeTextarea(forms.Textarea):
    """Monospace, wide, no wrapping: for JSON and Lua."""

    def __init__(self, attrs=None, rows: int = 16):
        super().__init__({"class": "junction-code", "rows": rows, "cols": 100, "spellcheck": "false", **(attrs or {})})


class PrettyJSONField(forms.JSONField):
    """JSON shown indented, so a manifest is editable by hand. Parsed with the platform's
    strict parser (``marketplace.jsonvalues``): NaN, duplicate keys, lone surrogates or a
    hostile nesting are a form error, not a 500."""

    widget = CodeTextarea

    def to_python(self, value):
        if isinstance(value, str) and value not in self.empty_values and not self.disabled:
            try:
                jsonvalues.loads(value)
            except jsonvalues.JSONRefused as exc:
                raise ValidationError(f"not valid JSON: {exc.message}", code="invalid") from None
        return super().to_python(value)

    def bound_data(self, data, initial):
        if isinstance(data, str) and not self.disabled:
            try:
                jsonvalues.loads(data)
            except jsonvalues.JSONRefused:
                return forms.fields.InvalidJSONInput(data)
        return super().bound_data(data, initial)

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        if value is None:
            return ""
        return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False, cls=self.encoder)


class JSONObjectField(PrettyJSONField):
    def validate(self, value):
        super().validate(value)
        if value not in self.empty_values and not isinstance(value, dict):
            raise ValidationError("must be a JSON object, e.g. {\"token\": \"...\"}")


def masked_keys(secrets: dict) -> str:
    return ", ".join(f"{key} = {SECRET_MASK}" for key in sorted(secrets)) or "nothing stored"


# --- Integrations -----------------------------------------------------------------------


class IntegrationForm(forms.ModelForm):
    """Metadata of an integration. The icon is a plain file field checked with
    ``validate_icon`` (so each rejection names its reason) and stored by
    ``services.media.set_icon``, never by the model form."""

    upload_icon = forms.FileField(
        required=False, label="Upload icon", help_text="Square PNG, 400 px or more on a side.",
        widget=forms.ClearableFileInput(attrs={"accept": "image/png"}),
    )
    remove_icon = forms.BooleanField(required=False, label="Remove the icon")
    field_aliases = {"icon": "upload_icon"}

    class Meta:
        model = Integration
        fields = ["owner", "name", "slug", "summary", "description", "category", "visibility"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "slug" in self.fields:
            self.fields["slug"].required = False
            self.fields["slug"].help_text = "Leave empty to derive it from the name."
        if "remove_icon" in self.fields and not self.instance.icon:
            del self.fields["remove_icon"]

    def clean_upload_icon(self):
        upload = self.cleaned_data.get("upload_icon")
        if upload:
            validate_icon(upload)
        return upload


class StoredFileWidget(forms.Widget):
    """A stored file shown as its name: it is never replaced in place."""

    def render(self, name, value, attrs=None, renderer=None):
        if not value:
            return ""
        return format_html('<span class="junction-stored-file">{}</span>', value.name.rsplit("/", 1)[-1])

    def value_from_datadict(self, data, files, name):
        return None


class AttachmentForm(forms.ModelForm):
    """New attachments go through ``services.media.add_attachment``; a stored file is
    never replaced in place (remove it and add another)."""

    class Meta:
        model = Attachment
        fields = ["integration", "file", "title"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["title"].required = False
        if self.instance.pk:
            self.fields["file"].disabled = True
            self.fields["file"].widget = StoredFileWidget()
            if "integration" in self.fields:
                self.fields["integration"].disabled = True

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if upload and not self.instance.pk:
            validate_attachment(upload)
        return upload


class ApiSchemaForm(forms.ModelForm):
    """An OpenAPI/Swagger document pasted as text or uploaded as a file (the file wins)."""

    upload = forms.FileField(required=False, label="Upload a file", help_text="JSON or YAML; replaces the text below.")
    source = forms.CharField(widget=CodeTextarea(rows=20), required=False, strip=False, label="Document")
    field_aliases = {"document": "source"}

    class Meta:
        model = ApiSchema
        fields = ["integration", "name", "source"]

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("upload")
        if upload:
            try:
                cleaned["source"] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                self.add_error("upload", "the document is not UTF-8 text")
        if "source" in cleaned and not (cleaned["source"] or "").strip() and not self.errors:
            self.add_error("source", "paste the document or upload its file")
        return cleaned


# --- Versions -----------------------------------------------------------------------------


class LuaSourceField(forms.CharField):
    """Lua source from a textarea: kept verbatim (indentation, trailing newline) except
    that the browser's CRLF line ends become LF, so re-saving changes nothing."""

    def __init__(self, **kwargs):
        super().__init__(strip=False, required=False, widget=CodeTextarea(rows=14), **kwargs)

    def to_python(self, value):
        return super().to_python(value).replace("\r\n", "\n")


class DraftForm(forms.ModelForm):
    """A draft's manifest (JSON) and its bundle, one text area per Lua file, saved by
    ``services.drafts.update_draft``. ``for_draft`` declares the per-file fields; the
    service's bundle errors ("files.<path>") land on the file they name."""

    manifest = JSONObjectField(widget=CodeTextarea(rows=24))
    new_file_path = forms.CharField(required=False, label="New file", help_text="Relative path, e.g. lib/util.lua.")
    new_file_source = LuaSourceField(label="Its source")
    file_paths: tuple[str, ...] = ()

    class Meta:
        model = IntegrationVersion
        fields = ["manifest"]

    @classmethod
    def for_draft(cls, draft: IntegrationVersion | None) -> type[DraftForm]:
        paths = tuple(sorted(draft.files)) if draft is not None else ()
        fields: dict = {"file_paths": paths}
        for n, path in enumerate(paths):
            fields[f"file_{n}"] = LuaSourceField(label=path, initial=draft.files[path])
            fields[f"remove_{n}"] = forms.BooleanField(required=False, label=f"Remove {path}")
        return type(cls.__name__, (cls,), fields)

    @classmethod
    def file_field_names(cls) -> list[str]:
        return [name for n in range(len(cls.file_paths)) for name in (f"file_{n}", f"remove_{n}")]

    def clean(self):
        cleaned = super().clean()
        files = {
            path: cleaned.get(f"file_{n}", "")
            for n, path in enumerate(self.file_paths) if not cleaned.get(f"remove_{n}")
        }
        path = (cleaned.get("new_file_path") or "").strip()
        if path:
            if path in files:
                self.add_error("new_file_path", f"{path} is already in the bundle; edit it above")
            files[path] = cleaned.get("new_file_source", "")
        elif cleaned.get("new_file_source"):
            self.add_error("new_file_path", "give the new file a path")
        cleaned["files"] = files
        return cleaned

    def refusal_field(self, key: str) -> str | None:
        if key == "files":
            return "new_file_path"
        if key.startswith("files."):
            path = key.removeprefix("files.")
            return f"file_{self.file_paths.index(path)}" if path in self.file_paths else "new_file_path"
        return None


class PublishForm(forms.Form):
    notes = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, "cols": 80}), required=False,
        help_text="What changed in this version. Required; shown to everyone who installs it.",
    )


class ForkForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 80}), required=False)
    organization = forms.ModelChoiceField(queryset=Organization.objects.none(), label="Into organization")

    def __init__(self, *args, organizations, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organization"].queryset = organizations
        if organizations.count() == 1:
            self.fields["organization"].initial = organizations.first()


# --- Devices and instances ---------------------------------------------------------------


class DeviceForm(forms.ModelForm):
    """Saved by ``services.devices``. Secrets are write-only: the form shows which keys
    are stored, masked, and takes a new JSON object to replace them. Leaving the box empty
    keeps what is stored. The DSN is shown with its password masked; left masked, the
    service keeps the stored password (for the same server only)."""

    # Devices are often plain-HTTP services on a plant network: "http" stays the default.
    base_url = forms.URLField(
        required=False, assume_scheme="http", widget=forms.URLInput(attrs={"class": "vURLField"}),
        help_text=Device._meta.get_field("base_url").help_text,
    )
    dsn = forms.CharField(
        required=False, max_length=500, label="DSN", widget=forms.TextInput(attrs={"class": "vTextField"}),
        help_text=Device._meta.get_field("dsn").help_text,
    )
    new_credentials = JSONObjectField(required=False, label="Replace credentials", widget=CodeTextarea(rows=4))
    clear_credentials = forms.BooleanField(required=False, label="Remove all credentials")
    new_headers = JSONObjectField(required=False, label="Replace headers", widget=CodeTextarea(rows=4))
    clear_headers = forms.BooleanField(required=False, label="Remove all headers")
    field_aliases = {"credentials": "new_credentials", "headers": "new_headers"}

    class Meta:
        model = Device
        fields = ["organization", "name", "kind", "base_url", "dsn"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.dsn:
            self.initial["dsn"] = masked_dsn(self.instance.dsn)
        for name in ("credentials", "headers"):
            if f"new_{name}" in self.fields:
                stored = getattr(self.instance, name) or {}
                self.fields[f"new_{name}"].help_text = (
                    f"Stored: {masked_keys(stored)}. Leave empty to keep; a JSON object replaces them."
                )


class InstanceForm(forms.ModelForm):
    """Name, config and bindings, saved by ``services.installs.reconfigure_instance``.
    Config starts from ``masked_config()``: a secret left as ******** keeps its value.
    ``for_instance`` adds one device choice per resource alias of the instance's version."""

    config_values = JSONObjectField(label="Config", widget=CodeTextarea(rows=12), required=False)

    class Meta:
        model = Instance
        fields = ["name"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["config_values"].initial = self.instance.masked_config()
            self.fields["config_values"].help_text = f"Secrets show as {SECRET_MASK}; leave them so to keep them."

    @staticmethod
    def binding_field(alias: str) -> str:
        return f"binding__{alias}"

    @classmethod
    def for_instance(cls, instance: Instance | None) -> type[InstanceForm]:
        if instance is None:
            return cls
        bound = {b.alias: b.device_id for b in instance.bindings.all()}
        devices = Device.objects.filter(organization_id=instance.organization_id)
        fields = {}
        for alias, spec in instance.version.resources.items():
            kind = spec.get("kind") if isinstance(spec, dict) else None
            fields[cls.binding_field(alias)] = forms.ModelChoiceField(
                queryset=devices.filter(kind=kind) if kind in ResourceKind.values else devices,
                initial=bound.get(alias), label=f"Resource “{alias}”", required=False,
                help_text=f"A {kind or 'any'} device of {instance.organization}.",
            )
        return type(cls.__name__, (cls,), fields)

    # "config.<name>" errors go on the config box, keeping the name in the message.
    field_aliases = {"config": "config_values"}

    def refusal_field(self, key: str) -> str | None:
        if key.startswith("bindings."):
            return self.binding_field(key.removeprefix("bindings."))
        return None

    def bindings(self) -> dict:
        return {
            name.removeprefix("binding__"): device
            for name, device in self.cleaned_data.items()
            if name.startswith("binding__") and device is not None
        }
