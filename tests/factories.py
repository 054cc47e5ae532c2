"""Plain factory functions for test data: each makes a valid object with overridable fields."""
from __future__ import annotations

import importlib
import io
import itertools
import json
import random
import struct
import threading
import zlib

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from PIL import Image

from marketplace.choices import ResourceKind, Role, Trigger, Visibility
from marketplace.models import (
    ApiSchema,
    CacheEntry,
    Category,
    ContainerEntry,
    Device,
    HandlerRun,
    Integration,
    IntegrationVersion,
    Membership,
    Organization,
)
from marketplace.services.installs import install_version
from marketplace.services.media import add_attachment
from marketplace.services.publishing import publish_version

_seq = itertools.count(1)


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """A real pbkdf2_sha256 hash with one iteration. The iteration count is part of the
    hash, so Django's own hasher verifies it (and upgrades it on a real login); creating a
    persona no longer costs a full-strength hash (about 0.25 s each)."""

    iterations = 1


def make_user(username: str | None = None, *, staff: bool = False, superuser: bool = False, password: str = "pw-123456"):
    username = username or f"user{next(_seq)}"
    User = get_user_model()
    if superuser:
        user = User.objects.create_superuser(username=username, password=None, email=f"{username}@example.com")
    else:
        user = User.objects.create_user(username=username, password=None, is_staff=staff, email=f"{username}@example.com")
    user.password = make_password(password, hasher=QuickPBKDF2PasswordHasher())
    user.save(update_fields=["password"])
    return user


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


def rewrite_published(version, **fields) -> None:
    """Change a published version's row as an older release or another program might have
    left it: around the model's guard and the database trigger, which is back afterwards."""
    frozen = importlib.import_module("marketplace.migrations.0003_published_versions_frozen")
    lift, restore = {
        "postgresql": (frozen.POSTGRES_DROP, frozen.POSTGRES), "sqlite": (frozen.SQLITE_DROP, frozen.SQLITE),
    }[connection.vendor]
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in lift:
            cursor.execute(statement)
        type(version).objects.filter(pk=version.pk).update(**fields)
        for statement in restore:
            cursor.execute(statement)


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


# --- Additions for the domain-operation tests (issue 3) ----------------------------------------

SAMPLE_CONFIG = {"site": "Plant 1", "apiKey": "s3cret-api-key"}


def make_bindings(organization: Organization) -> dict:
    """One device of each kind SAMPLE_MANIFEST declares, keyed by resource alias."""
    return {"my-printer": make_device(organization, ResourceKind.HTTP), "erp": make_device(organization, ResourceKind.SQL)}


def make_instance(version: IntegrationVersion | None = None, organization: Organization | None = None, **kw):
    """An instance installed through the service (so config and bindings are validated)."""
    version = version or make_published()
    organization = organization or make_org()
    kw.setdefault("name", f"Instance {next(_seq)}")
    kw.setdefault("config", dict(SAMPLE_CONFIG))
    if "bindings" not in kw:
        kw["bindings"] = make_bindings(organization)
    return install_version(version=version, organization=organization, **kw)


def pdf_bytes() -> bytes:
    return b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def upload(name: str, data: bytes, content_type: str = "application/octet-stream"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def make_attachment(integration: Integration, *, name: str = "manual.pdf", data: bytes | None = None, title: str = ""):
    return add_attachment(
        integration=integration, upload=upload(name, pdf_bytes() if data is None else data, "application/pdf"),
        title=title,
    )


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose IHDR claims ``width``×``height`` (8-bit grey): what a
    decompression bomb or an oversized icon looks like before any pixel is decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def noisy_png_bytes(width: int = 400) -> bytes:
    """A PNG that does not compress: its pixel data is long enough to cut in the middle."""
    rng = random.Random(width)
    image = Image.frombytes("RGB", (width, width), rng.randbytes(width * width * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def make_api_schema(integration: Integration, name: str = "openapi.json"):
    document = {"openapi": "3.0.3", "info": {"title": "Printer", "version": "1"}, "paths": {}}
    return ApiSchema.objects.create(
        integration=integration, name=name, source=json.dumps(document), document=document, title="Printer",
        api_version="1",
    )


def make_run(instance, **fields):
    fields.setdefault("handler", "sync")
    fields.setdefault("trigger", Trigger.MANUAL)
    return HandlerRun.objects.create(instance=instance, **fields)


def make_container_entry(instance, container: str = "orders", key: str | None = None, value=None):
    return ContainerEntry.objects.create(
        instance=instance, container=container, key=key or f"key-{next(_seq)}", value=value or {"id": 1}
    )


def make_cache_entry(instance=None, *, organization: Organization | None = None, key: str | None = None, value=None):
    return CacheEntry.objects.create(
        instance=instance, organization=organization or instance.organization, key=key or f"key-{next(_seq)}",
        value=value if value is not None else 1,
    )


def in_threads(*targets):
    """Run each target in its own thread (and database connection); return what each
    returned or raised, in order."""
    results = [None] * len(targets)

    def run(i, target):
        try:
            results[i] = target()
        except Exception as exc:  # noqa: BLE001 — handed back to the test to assert on
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results
