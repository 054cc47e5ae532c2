"""Plain factory functions for test data: each makes a valid object with overridable fields."""
from __future__ import annotations

import io
import itertools

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from marketplace.choices import ResourceKind, Role, Visibility
from marketplace.models import Category, Device, Integration, IntegrationVersion, Membership, Organization
from marketplace.services.publishing import publish_version

_seq = itertools.count(1)


def make_user(username: str | None = None, *, staff: bool = False, superuser: bool = False, password: str = "pw-123456"):
    username = username or f"user{next(_seq)}"
    User = get_user_model()
    if superuser:
        return User.objects.create_superuser(username=username, password=password, email=f"{username}@example.com")
    return User.objects.create_user(username=username, password=password, is_staff=staff, email=f"{username}@example.com")


def make_org(name: str | None = None) -> Organization:
    n = next(_seq)
    name = name or f"Org {n}"
    return Organization.objects.create(name=name, slug=f"org-{n}")


def add_member(user, organization: Organization, role: str = Role.PUBLISHER) -> Membership:
    return Membership.objects.create(user=user, organization=organization, role=role)


def make_category(name: str | None = None) -> Category:
    n = next(_seq)
    return Category.objects.create(name=name or f"Category {n}", slug=f"category-{n}")


def make_integration(owner: Organization | None = None, **fields) -> Integration:
    n = next(_seq)
    fields.setdefault("name", f"Integration {n}")
    fields.setdefault("slug", f"integration-{n}")
    fields.setdefault("visibility", Visibility.PUBLIC)
    return Integration.objects.create(owner=owner or make_org(), **fields)


SAMPLE_MANIFEST = {
    "name": "printer-sync",
    "title": "Printer sync",
    "configSchema": {
        "type": "object",
        "properties": {
            "site": {"type": "string", "title": "Site name"},
            "apiKey": {"type": "string", "format": "password"},
            "interval": {"type": "integer", "minimum": 1, "default": 5},
        },
        "required": ["site", "apiKey"],
    },
    "resources": {"my-printer": {"kind": "http"}, "erp": {"kind": "sql"}},
    "permissions": ["device.http", "device.sql.read", "integration.containers", "log"],
    "dataContainerSchemas": {"orders": {"type": "object", "properties": {"id": {"type": "integer"}}}},
    "handlers": {
        "sync": {"type": "timer", "file": "main.lua", "function": "sync", "schedule": {"every": "5m"}},
        "status": {"type": "rpc", "file": "main.lua", "function": "status"},
    },
}
SAMPLE_FILES = {
    "main.lua": 'function sync(ctx, input)\n  ctx.log.info("synced")\n  return { ok = true }\nend\n\n'
    "function status(ctx, input)\n  return { ok = true }\nend\n"
}


def make_draft(integration: Integration | None = None, *, manifest=None, files=None) -> IntegrationVersion:
    return IntegrationVersion.objects.create(
        integration=integration or make_integration(),
        manifest=SAMPLE_MANIFEST if manifest is None else manifest,
        files=SAMPLE_FILES if files is None else files,
    )


def make_published(integration: Integration | None = None, *, notes: str = "Release", available: bool = True, **kw):
    version = publish_version(draft=make_draft(integration, **kw), notes=notes)
    if not available:
        version.available = False
        version.save()
    return version


def make_device(organization: Organization, kind: str = ResourceKind.HTTP, **fields) -> Device:
    n = next(_seq)
    fields.setdefault("name", f"{kind} device {n}")
    if kind == ResourceKind.HTTP:
        fields.setdefault("base_url", "http://127.0.0.1:9/")
    else:
        fields.setdefault("dsn", "sqlite:////tmp/junction-test.db")
    return Device.objects.create(organization=organization, kind=kind, **fields)


def png_bytes(width: int = 400, height: int | None = None, *, fmt: str = "PNG", color=(30, 120, 200)) -> bytes:
    image = Image.new("RGB", (width, height or width), color)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def png_upload(width: int = 400, height: int | None = None, *, fmt: str = "PNG", name: str = "icon.png"):
    return SimpleUploadedFile(name, png_bytes(width, height, fmt=fmt), content_type="image/png")
