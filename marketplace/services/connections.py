"""Testing a device's connection: the "test connection" button of the customers' pages.

The runtime probes the device through its own clients, so it connects exactly as a run
would (``runtime/device_checks.py``, reached through ``marketplace.hooks``): a ``HEAD`` of
an HTTP device's base URL (a 5xx is a failure), ``SELECT 1`` on a SQL device.

The check is bounded by JUNCTION_DEVICE_TEST_TIMEOUT_SECONDS. The reason never carries a
secret: the clients' messages name the method, path or server, and anything of the
device's credentials, headers or DSN password that could still appear is masked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings

from .. import access
from ..hooks import runtime_hooks
from ..models import Device
from ..validators import SECRET_MASK

if TYPE_CHECKING:
    from ..querysets import AnyUser


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    reason: str  # a short sentence for the page, without secrets


def check_connection(*, device: Device, user: AnyUser) -> ConnectionResult:
    """Check that ``device`` answers (NotFound for a device of another organization).
    Nothing is written; a device of any kind gives a result, never an exception."""
    device = access.get_device_for(user, device.pk, write=True)
    timeout = settings.JUNCTION_DEVICE_TEST_TIMEOUT_SECONDS
    ok, reason = runtime_hooks().probe_device(device, timeout=timeout)
    return ConnectionResult(ok, reason if ok else _scrubbed(device, reason))


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
