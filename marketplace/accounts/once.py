"""Secrets shown once: a token's secret or an invitation link travels in the session from
the POST that made it to the next page that shows it, then is forgotten, so a reload (or the
back button) no longer shows it. Sessions are rows in the database, so the value is
encrypted with the secrets keys (``crypto``) like every other secret at rest."""
from __future__ import annotations

from typing import Any

from ..crypto import decrypt_json, encrypt_json

_PREFIX = "junction_once:"


def reveal_once(request, key: str, value: Any) -> None:
    request.session[_PREFIX + key] = encrypt_json(value)


def take_revealed(request, key: str) -> Any:
    stored = request.session.pop(_PREFIX + key, None)
    if stored is None:
        return None
    try:
        return decrypt_json(stored)
    except ValueError:  # the keys were rotated since: the secret is lost, as after a reload
        return None
