"""Testing a device's connection: the "test connection" button of the customers' pages.

One check per kind, through the runtime's own clients so it connects exactly as a run
would (the egress policy, the SQLite folder rule, the platform's files refused):

- HTTP: a ``HEAD`` of the device's base URL, with its headers and credentials. Any answer
  counts as reachable; a 5xx is reported as failed, with its status.
- SQL: ``SELECT 1``, read-only.

The check is bounded by JUNCTION_DEVICE_TEST_TIMEOUT_SECONDS. The reason never carries a
secret: the clients' messages name the method, path or server, and anything of the
device's credentials, headers or DSN password that could still appear is masked.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings

from .. import access
from ..choices import ResourceKind
from ..models import Device
from ..validators import SECRET_MASK

if TYPE_CHECKING:
    from ..querysets import AnyUser


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    reason: str  # a short sentence for the page, without secrets


def _runtime() -> ModuleType:
    # The runtime app builds on marketplace; imported late so marketplace loads on its own.
    from runtime import devices

    return devices


def check_connection(*, device: Device, user: AnyUser) -> ConnectionResult:
    """Check that ``device`` answers (NotFound for a device of another organization).
    Nothing is written; a device of any kind gives a result, never an exception."""
    device = access.get_device_for(user, device.pk, write=True)
    devices = _runtime()
    spec = devices.DeviceSpec.from_device(device)
    timeout = settings.JUNCTION_DEVICE_TEST_TIMEOUT_SECONDS
    deadline = time.monotonic() + timeout
    try:
        if device.kind == ResourceKind.HTTP:
            answer = devices.http_request(spec, {"method": "HEAD", "path": "/"}, deadline=deadline, max_bytes=64 * 1024)
            status = answer["status"]
            if status >= 500:
                return ConnectionResult(False, _scrubbed(device, f"the device answered HTTP {status}"))
            return ConnectionResult(True, f"the device answered HTTP {status}")
        devices.sql_execute(spec, "SELECT 1", [], write=False, deadline=deadline, max_rows=1)
        return ConnectionResult(True, "the database answered SELECT 1")
    except devices.RunStopped:
        return ConnectionResult(False, f"no answer within {timeout} s")
    except devices.HostError as exc:
        return ConnectionResult(False, _scrubbed(device, exc.message))


def _scrubbed(device: Device, text: str) -> str:
    """``text`` with every secret of ``device`` masked, as a last guard."""
    secrets: list[str] = []
    for values in (device.credentials or {}, device.headers or {}):
        secrets += [str(v) for v in values.values() if v not in (None, "") and len(str(v)) >= 3]
    try:
        password = urlsplit(device.dsn or "").password
    except ValueError:
        password = None
    if password:
        secrets.append(password)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, SECRET_MASK)
    return text[:300]
