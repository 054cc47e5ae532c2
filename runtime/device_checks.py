"""Probing a device for the "test connection" button (marketplace/services/connections.py,
which reaches this through marketplace/hooks.py). It goes through the runtime's own device
clients, so it connects exactly as a run would: the egress policy, the SQLite folder rule,
the platform's files refused.

- HTTP: a ``HEAD`` of the device's base URL, with its headers and credentials. Any answer
  counts as reachable; a 5xx is reported as failed, with its status.
- SQL: ``SELECT 1``, read-only.
"""
from __future__ import annotations

import time

from marketplace.choices import ResourceKind
from marketplace.models import Device

from .device_sql import sql_execute
from .devices import DeviceSpec, http_request
from .outcomes import HostError, RunStopped


def probe(device: Device, *, timeout: float) -> tuple[bool, str]:
    """``(answered, reason)`` for ``device`` within ``timeout`` seconds; never raises for
    what the device does. The reason may quote the device's error: callers mask secrets."""
    spec = DeviceSpec.from_device(device)
    deadline = time.monotonic() + timeout
    try:
        if device.kind == ResourceKind.HTTP:
            answer = http_request(spec, {"method": "HEAD", "path": "/"}, deadline=deadline, max_bytes=64 * 1024)
            status = answer["status"]
            return status < 500, f"the device answered HTTP {status}"
        sql_execute(spec, "SELECT 1", [], write=False, deadline=deadline, max_rows=1)
        return True, "the database answered SELECT 1"
    except RunStopped:
        return False, f"no answer within {timeout:g} s"
    except HostError as exc:
        return False, exc.message
