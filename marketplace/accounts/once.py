"""Secrets shown once: a token's secret or an invitation link is kept in the session from
the POST that made it to the next page that shows it, then forgotten, so a reload (or the
back button) no longer shows it. Only the hash is stored anywhere else."""
from __future__ import annotations

from typing import Any

_PREFIX = "junction_once:"


def reveal_once(request, key: str, value: Any) -> None:
    request.session[_PREFIX + key] = value


def take_revealed(request, key: str) -> Any:
    return request.session.pop(_PREFIX + key, None)
