"""A service's refusal keyed by the request's own field names. Services name fields as
the domain does (``icon``, ``source``); an endpoint whose request calls one ``file`` says
so here, as the console's forms do with ``field_aliases`` (``marketplace.formerrors``)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..exceptions import DomainError


@contextmanager
def fields_renamed(aliases: dict[str, str]) -> Iterator[None]:
    """``with fields_renamed({"icon": "file"}): set_icon(...)``: an error on ``icon``
    reaches the client on ``file`` (the first part of a dotted key is renamed)."""
    try:
        yield
    except DomainError as exc:
        renamed: dict[str, list[str]] = {}
        for key, messages in exc.errors.items():
            head, dot, rest = key.partition(".")
            renamed.setdefault(aliases.get(head, head) + dot + rest, []).extend(messages)
        exc.errors = renamed
        raise
