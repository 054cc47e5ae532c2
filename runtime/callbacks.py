"""One-time callback URLs: ``ctx.callback.url(event, {ttl = seconds})`` (permission
``callback``) mints a URL that posts ``event`` to the run's instance once.

The URL is ``JUNCTION_BASE_URL/hooks/callback/<secret>``: no login, the secret is the
credential, and only its SHA-256 is stored (``CallbackToken``). A post to it
(``callback_views.callback``) consumes the token with one conditional UPDATE (``used_at``
still empty, ``expires_at`` still ahead), in the same transaction as ``post_event``:

- of two posts at once exactly one claims it (the other's UPDATE finds ``used_at`` set:
  PostgreSQL re-checks the condition once the first commits; SQLite serialises writes);
- a second post, an expired URL or a wrong secret gets 404 and posts nothing;
- a post the event cannot take (the instance not live, its queue full, a payload the
  platform refuses) rolls the claim back with it: the URL stays good until it expires.

A token is committed when minted, whatever the run does next (the URL may already have
left in a device call). One run mints at most JUNCTION_CALLBACK_MAX_PER_RUN (a catchable
``quota_exceeded`` beyond); ``ttl`` defaults to JUNCTION_CALLBACK_DEFAULT_TTL_SECONDS and
is at most JUNCTION_CALLBACK_MAX_TTL_SECONDS. ``manage.py run_handler`` mints nothing
(``DryRunMinter``): it prints the URL it would have minted. Housekeeping deletes tokens a
day past their expiry (``prune``).
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from marketplace.exceptions import InvalidInput, NotFound
from marketplace.models import HandlerRun

from .events import post_event, validate_event_name
from .models import CallbackToken
from .sandbox import HostError

# Expired or used tokens are kept this long (a late post still gets a plain 404), then pruned.
KEPT_AFTER_EXPIRY = timedelta(days=1)


def callback_url(secret: str) -> str:
    return settings.JUNCTION_BASE_URL + reverse("runtime:callback", args=[secret])


class Minter:
    """Mints the callback URLs of one run: checks the arguments and the per-run quota, then
    ``_mint``. One per run (its count is the run's)."""

    def __init__(self) -> None:
        self.minted = 0

    def url(self, event: Any, options: Any) -> str:
        event, ttl = _arguments(event, options)
        cap = settings.JUNCTION_CALLBACK_MAX_PER_RUN
        if self.minted >= cap:
            raise HostError("quota_exceeded", f"a run mints at most {cap} callback URLs (JUNCTION_CALLBACK_MAX_PER_RUN)")
        self.minted += 1
        return self._mint(event, ttl)

    def _mint(self, event: str, ttl: int) -> str:  # pragma: no cover - every minter overrides it
        raise NotImplementedError


class InstanceMinter(Minter):
    """Installed runs: a ``CallbackToken`` row of the instance per URL."""

    def __init__(self, instance_id: int) -> None:
        super().__init__()
        self.instance_id = instance_id

    def _mint(self, event: str, ttl: int) -> str:
        secret = secrets.token_urlsafe(32)
        CallbackToken.objects.create(
            instance_id=self.instance_id, event=event, digest=CallbackToken.digest_of(secret),
            expires_at=timezone.now() + timedelta(seconds=ttl),
        )
        return callback_url(secret)


class DryRunMinter(Minter):
    """``run_handler``: mints nothing. Returns a URL of the real shape whose secret says it
    is not one, and keeps what it would have minted in ``would_mint`` for the command to print."""

    def __init__(self) -> None:
        super().__init__()
        self.would_mint: list[dict] = []

    def _mint(self, event: str, ttl: int) -> str:
        url = callback_url(f"dry-run-{self.minted}")
        self.would_mint.append({"event": event, "ttl": ttl, "url": url})
        return url


def _arguments(event: Any, options: Any) -> tuple[str, int]:
    try:
        validate_event_name(event)
    except InvalidInput as exc:
        raise HostError("invalid_argument", f"ctx.callback.url: {exc.message}") from None
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise HostError("invalid_argument", "ctx.callback.url: options must be a table {ttl = seconds}")
    ttl = options.get("ttl", settings.JUNCTION_CALLBACK_DEFAULT_TTL_SECONDS)
    most = settings.JUNCTION_CALLBACK_MAX_TTL_SECONDS
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 1 <= ttl <= most:
        raise HostError("invalid_argument", f"ctx.callback.url: ttl must be 1 to {most} seconds")
    return event, int(ttl)


@transaction.atomic
def consume(secret: str, payload: Any) -> tuple[str, list[HandlerRun]]:
    """Claim the token whose secret is ``secret`` and post its event with ``payload`` to its
    instance; returns the event and the runs queued. NotFound for an unknown, used or expired token.
    Whatever ``post_event`` raises (InvalidInput, NotLive, QuotaExceeded) undoes the claim."""
    now = timezone.now()
    digest = CallbackToken.digest_of(secret)
    claimed = CallbackToken.objects.filter(digest=digest, used_at__isnull=True, expires_at__gt=now).update(used_at=now)
    if not claimed:
        raise NotFound("no such callback, or it was used or has expired")
    token = CallbackToken.objects.select_related("instance__version").get(digest=digest)
    return token.event, post_event(instance=token.instance, event=token.event, payload=payload)


def prune(*, now=None) -> int:
    """Delete tokens expired more than KEPT_AFTER_EXPIRY ago (used or not); returns how many."""
    now = now or timezone.now()
    return CallbackToken.objects.filter(expires_at__lt=now - KEPT_AFTER_EXPIRY).delete()[0]
