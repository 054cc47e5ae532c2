"""Rules on input, defined once and used by models, forms and services, so
every interface refuses the same thing with the same message."""
from __future__ import annotations

import io
import mimetypes
import re
import warnings
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jsonschema
from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image

from . import egress, schemas
from .choices import ResourceKind

if TYPE_CHECKING:
    from django.core.files import File

SECRET_MASK = "********"


# --- Icons ------------------------------------------------------------------------------------

def validate_icon(upload: File) -> None:
    """A PNG, square, between JUNCTION_ICON_MIN_PX and JUNCTION_ICON_MAX_PX on a side and at
    most JUNCTION_ICON_MAX_BYTES. Dimensions are read from the header before any pixel is
    decoded, so a decompression bomb is refused without being inflated."""
    max_bytes = settings.JUNCTION_ICON_MAX_BYTES
    size = getattr(upload, "size", None)
    if size is not None and size > max_bytes:
        raise ValidationError(
            f"icon is too large: {size:,} bytes, at most {max_bytes:,}", code="icon_too_large"
        )
    upload.seek(0)
    data = upload.read(max_bytes + 1)
    upload.seek(0)
    if len(data) > max_bytes:
        raise ValidationError(f"icon is too large: more than {max_bytes:,} bytes", code="icon_too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image_format = image.format
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValidationError("icon has too many pixels to be decoded safely", code="icon_bomb") from None
    except Exception:
        raise ValidationError("icon must be a PNG image: the file is not an image", code="icon_not_image") from None
    if image_format != "PNG":
        raise ValidationError(f"icon must be a PNG image: got {image_format}", code="icon_not_png")
    low, high = settings.JUNCTION_ICON_MIN_PX, settings.JUNCTION_ICON_MAX_PX
    if width != height:
        raise ValidationError(f"icon must be square: got {width}×{height}", code="icon_not_square")
    if width < low:
        raise ValidationError(f"icon must be at least {low}×{low} px: got {width}×{height}", code="icon_too_small")
    if width > high:
        raise ValidationError(f"icon must be at most {high}×{high} px: got {width}×{height}", code="icon_too_big")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.open(io.BytesIO(data)).load()
    except Exception:
        raise ValidationError("icon is not a valid PNG: the image data is damaged", code="icon_damaged") from None


# --- Attachments ---------------------------------------------------------------------------

# Files a browser or an OS would run or render as active content are refused outright.
REFUSED_ATTACHMENT_EXTENSIONS = {
    ".exe", ".dll", ".bat", ".cmd", ".com", ".msi", ".scr", ".ps1", ".sh", ".bash", ".vbs",
    ".js", ".mjs", ".jar", ".app", ".apk", ".bin", ".elf", ".so", ".dylib", ".deb", ".rpm",
    ".html", ".htm", ".xhtml", ".svg", ".shtml", ".php", ".hta", ".py", ".pl",
}
REFUSED_ATTACHMENT_TYPES = {
    "text/html", "application/xhtml+xml", "image/svg+xml", "application/javascript",
    "text/javascript", "application/x-msdownload", "application/x-executable",
    "application/x-sh", "application/x-dosexec", "application/java-archive",
}
# Magic numbers of executables, caught even when renamed to .pdf.
EXECUTABLE_MAGIC = (b"MZ", b"\x7fELF", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe", b"#!")


def attachment_content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def validate_attachment(upload: File) -> None:
    name = PurePosixPath(getattr(upload, "name", "") or "").name
    max_bytes = settings.JUNCTION_ATTACHMENT_MAX_BYTES
    if not name:
        raise ValidationError("attachment needs a file name", code="attachment_unnamed")
    if upload.size > max_bytes:
        raise ValidationError(
            f"attachment is too large: {upload.size:,} bytes, at most {max_bytes:,}", code="attachment_too_large"
        )
    if upload.size == 0:
        raise ValidationError("attachment is empty", code="attachment_empty")
    extension = PurePosixPath(name).suffix.lower()
    content_type = attachment_content_type(name)
    if extension in REFUSED_ATTACHMENT_EXTENSIONS or content_type in REFUSED_ATTACHMENT_TYPES:
        raise ValidationError(
            f"attachments of type {extension or content_type} are refused: executable or HTML content",
            code="attachment_type",
        )
    upload.seek(0)
    head = upload.read(8)
    upload.seek(0)
    if head.startswith(EXECUTABLE_MAGIC):
        raise ValidationError("attachment looks like an executable program and is refused", code="attachment_type")


# --- Manifests and config ------------------------------------------------------------------

def declared_resources(manifest: dict) -> dict[str, dict]:
    resources = manifest.get("resources") or {}
    return resources if isinstance(resources, dict) else {}


def secret_fields(config_schema: dict | None) -> set[str]:
    """Top-level config properties that are secrets: ``format: password`` or ``writeOnly``."""
    properties = (config_schema or {}).get("properties") or {}
    return {
        name for name, spec in properties.items()
        if isinstance(spec, dict) and (spec.get("format") == "password" or spec.get("writeOnly") is True)
    }


def _error_path(error: jsonschema.ValidationError, field: str = "config") -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        # jsonschema reports a missing property at its parent; name the property itself.
        missing = error.message.split("'")[1] if "'" in error.message else ""
        parts.append(missing)
    return ".".join([field, *[p for p in parts if p]])


def _schema_errors(validator: Any, value: Any, field: str) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]):
        message = error.message if error.validator != "required" else "this field is required"
        errors.setdefault(_error_path(error, field), []).append(message)
    return errors


def validate_config(config_schema: dict | None, values: Any) -> dict:
    """Check ``values`` against a version's configSchema (Draft 2020-12) and return them
    with schema defaults filled in. Raises ValidationError keyed by ``config.<field>``."""
    if not isinstance(values, dict):
        raise ValidationError({"config": ["config must be a JSON object"]})
    schema = config_schema or {"type": "object"}
    completed = dict(values)
    for name, spec in (schema.get("properties") or {}).items():
        if isinstance(spec, dict) and "default" in spec and name not in completed:
            completed[name] = spec["default"]
    try:
        schemas.check_schema(schema)
    except schemas.SchemaError as exc:
        # Publishing validates configSchema; this guards versions that predate that check.
        raise ValidationError({"config": [f"the version's configSchema is not valid JSON Schema: {exc.message}"]}) from exc
    errors = _schema_errors(schemas.validator(schema, format_checker=True), completed, "config")
    if errors:
        raise ValidationError(errors)
    return completed


def validate_handler_input(schema: Any, value: Any, *, field: str = "input") -> None:
    """Check an RPC call's input against its handler's ``inputSchema`` (Draft 2020-12), so a
    caller learns which part is wrong before any run is made. Raises ValidationError keyed
    by ``input.<path>``. The runtime checks again when the run starts (``run_spec``): a
    schema the version carries that is itself invalid is left for it to report."""
    if not isinstance(schema, (dict, bool)):
        return
    try:
        schemas.check_schema(schema)
    except schemas.SchemaError:
        return
    errors = _schema_errors(schemas.validator(schema), value, field)
    if errors:
        raise ValidationError(errors)


def validate_resource_kind(kind: str) -> None:
    if kind not in ResourceKind.values:
        raise ValidationError(f"resource kind must be one of {', '.join(ResourceKind.values)}: got {kind!r}")


# --- Devices ---------------------------------------------------------------------------------

SQL_DSN_PREFIXES = ("sqlite:///", "postgresql://", "postgres://")


def sqlite_device_folder(organization_id: int) -> Path:
    """The folder an organization's SQLite devices live in: one per organization under
    ``JUNCTION_DEVICE_SQLITE_DIR``, so no customer can name another's file."""
    return Path(settings.JUNCTION_DEVICE_SQLITE_DIR) / str(int(organization_id))


def confined_sqlite_path(dsn: str, folder: Path) -> Path:
    """The file a ``sqlite:///`` DSN names, with symlinks and ``..`` resolved; a relative
    path is taken inside ``folder``. Raises ValidationError unless the file is in ``folder``
    (the check is made on the resolved path, so a symlink out of the folder is refused)."""
    if "\x00" in dsn:
        raise ValidationError("a DSN must not contain NUL characters", code="dsn_nul")
    path = Path(dsn[len("sqlite:///"):])
    root = folder.resolve()
    target = (root / path).resolve()  # an absolute ``path`` replaces ``root``
    if not path.parts or root not in target.parents:
        raise ValidationError(
            f"a SQLite device's file must be inside {root}/ (this organization's device folder): "
            f"write sqlite:///name.sqlite3 for {root}/name.sqlite3",
            code="sqlite_outside_folder",
        )
    return target


def validate_device_base_url(url: str) -> None:
    """An HTTP device's base URL: http(s) only, no user:password@ (credentials are kept
    encrypted in the device's credentials, never in plain sight in its URL), and a host the
    egress policy allows (``validate_device_host``)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise ValidationError("the base URL must start with http:// or https://", code="base_url_scheme")
    if "@" in parts.netloc:
        raise ValidationError("the base URL must not hold a user name or password: put them in the credentials",
                              code="base_url_userinfo")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValidationError("the base URL's port is not valid", code="base_url_port") from None
    if not parts.hostname:
        raise ValidationError("the base URL needs a host", code="base_url_host")
    validate_device_host(parts.hostname, port)


def validate_device_host(host: str, port: int) -> None:
    """Refuse a device host that the egress policy refuses, as written: a literal address
    in any spelling (``127.1``, ``0x7f000001``, ``[::ffff:127.0.0.1]``), ``localhost``, or
    the name of one of the platform's own services. Other names are checked on the
    addresses they resolve to when the device is used (DNS can change after saving)."""
    reason = egress.policy().host_refusal(host, port)
    if reason:
        raise ValidationError(reason, code="device_address_refused")


def validate_device_dsn(dsn: str, *, organization_id: int | None) -> None:
    """A SQL device's DSN: a known scheme; for SQLite, a file in the organization's device
    folder; for PostgreSQL, one server given by host (no Unix socket) that the egress
    policy allows."""
    if "\x00" in dsn:
        raise ValidationError("a DSN must not contain NUL characters", code="dsn_nul")
    if not dsn.startswith(SQL_DSN_PREFIXES):
        raise ValidationError("DSN must start with sqlite:///, postgresql:// or postgres://", code="dsn_scheme")
    if dsn.startswith("sqlite:///") and organization_id is not None:
        confined_sqlite_path(dsn, sqlite_device_folder(organization_id))
    if dsn.startswith(("postgresql://", "postgres://")):
        try:
            host, port = egress.postgres_server(dsn)
        except egress.EgressRefused as exc:
            raise ValidationError(str(exc), code="dsn_server") from exc
        validate_device_host(host, port)


# The raw (still %-encoded) password of a DSN: in its user info, or a password= parameter.
_DSN_PASSWORDS = (
    re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*:(?P<pw>[^/?#@]*)@"),
    re.compile(r"[?&]password=(?P<pw>[^&#]*)"),
)


def _password_spans(dsn: str) -> list[tuple[int, int]]:
    return [m.span("pw") for pattern in _DSN_PASSWORDS for m in pattern.finditer(dsn)]


def _replace_spans(text: str, spans: list[tuple[int, int]], value: str) -> str:
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + value + text[end:]
    return text


def masked_dsn(dsn: str) -> str:
    """The DSN as the console shows it: its password replaced by ``SECRET_MASK``."""
    return _replace_spans(dsn, _password_spans(dsn), SECRET_MASK)


def _server(dsn: str) -> str:
    netloc = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)", dsn)
    return (netloc.group(1).rpartition("@")[2] if netloc else "").lower()


def dsn_keeping_password(submitted: str, stored: str) -> str:
    """A DSN edited in the console: where it still shows ``SECRET_MASK`` as its password,
    the stored password is put back — only for the same host and port, so that editing a
    device cannot send its password to another server."""
    spans = [span for span in _password_spans(submitted) if submitted[span[0]:span[1]] == SECRET_MASK]
    if not spans:
        return submitted
    kept = [stored[start:end] for start, end in _password_spans(stored)]
    if not kept:
        raise ValidationError(f"type the password: {SECRET_MASK} stands for a stored one, and none is stored",
                              code="dsn_no_password")
    if _server(submitted) != _server(stored):
        raise ValidationError("the server changed: type the password again (it is only kept for the same host and port)",
                              code="dsn_password_moved")
    return _replace_spans(submitted, spans, kept[0])
