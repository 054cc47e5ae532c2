"""Per-instance webhook throttling: a token bucket per instance, refilled at
JUNCTION_WEBHOOK_RATE tokens a second up to JUNCTION_WEBHOOK_BURST; each post to
``/hooks/<token>/<event>`` takes one, and a post that finds none is answered 429 with
``Retry-After`` (``runtime.views``).

The bucket is a row (``WebhookBucket``) taken by one conditional UPDATE that refills and
takes in the same statement, so every web process — several gunicorn workers, several
hosts — shares it, on SQLite as on PostgreSQL, with nothing else to run. Why a row rather
than the cache: docs/operations.md, "Webhook throttling".
"""
from __future__ import annotations

import math
import time

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest, Least
from django.db.models.lookups import GreaterThanOrEqual

from .models import WebhookBucket


def take(instance_id: int, *, now: float | None = None) -> float:
    """Take one token from the instance's bucket. Returns 0 when taken, else the seconds
    until a token is back (the post is refused). A rate of 0 turns throttling off."""
    rate, burst = float(settings.JUNCTION_WEBHOOK_RATE), float(settings.JUNCTION_WEBHOOK_BURST)
    if rate <= 0:
        return 0.0
    now = time.time() if now is None else now
    # Refilled since the last take, never beyond the burst. A clock behind the last take
    # (another host's) refills nothing and does not move the stamp back.
    available = Least(
        Value(burst), F("tokens") + Greatest(Value(now) - F("refilled_at"), Value(0.0)) * Value(rate)
    )
    bucket = WebhookBucket.objects.filter(instance_id=instance_id)

    def take_one() -> bool:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # A take lost to a crash lets one more post through later: not worth waiting
                # for a WAL flush, which costs far more than the UPDATE (docs/operations.md).
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            return bool(bucket.filter(GreaterThanOrEqual(available, 1)).update(
                tokens=available - 1, refilled_at=Greatest(F("refilled_at"), Value(now)),
            ))

    # Three tries: only a race with the bucket's creation (or a refill between the UPDATE
    # and the SELECT) sends a post round again.
    for _ in range(3):
        if take_one():
            return 0.0
        left = bucket.values_list("tokens", "refilled_at").first()
        if left is None:  # the instance's first post: a full bucket, less this one
            try:
                with transaction.atomic():
                    WebhookBucket.objects.create(instance_id=instance_id, tokens=burst - 1, refilled_at=now)
                return 0.0
            except IntegrityError:  # another post created it first: take from it like any other
                continue
        tokens, refilled_at = left
        tokens = min(burst, tokens + max(0.0, now - refilled_at) * rate)
        if tokens < 1:
            return (1 - tokens) / rate
    return 1 / rate


def retry_after(wait: float) -> str:
    """``Retry-After`` in whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))
