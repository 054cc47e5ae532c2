"""Events: posting an event to an instance queues a run of each of its event handlers for
that event name. Events come from the webhook URL (``runtime.views``), from code
(``post_event``) and from polling timers (``post_polled_items``).

Caps (docs/quotas.md): an event that would take the instance beyond
JUNCTION_INSTANCE_MAX_QUEUED_RUNS queued runs is refused whole (``QuotaExceeded``, code
``queue_full``; the webhook answers 429). A polling run posts at most JUNCTION_POLL_MAX_ITEMS
new items, and no more than the queue has room for: the others are not marked seen, so
the next poll that returns them posts them, and a warning on the run says how many waited."""
from __future__ import annotations

import logging
import re

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace import jsonvalues
from marketplace.choices import LIVE_STATES, InstanceState, Trigger
from marketplace.exceptions import Conflict, InvalidInput
from marketplace.models import HandlerRun, Instance

from . import ingress
from .models import SeenItem
from .runs import enqueue_runs, queue_rooms, require_queue_room

log = logging.getLogger(__name__)

EVENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


class NotLive(Conflict):
    """The instance is not taking events now: a lifecycle moment of it is running, or its
    install failed. Nothing was queued."""

    code = "not_live"

    def __init__(self, name: str, state: str):
        label = InstanceState(state).label.lower() if state else "uninstalled"
        super().__init__(f"{name} takes no events while it is {label}", field="instance")


def validate_event_name(event) -> str:
    if not isinstance(event, str) or not EVENT_NAME_RE.match(event):
        raise InvalidInput(
            "an event name is 1-100 letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
            field="event",
        )
    return event


def event_handlers(instance: Instance, event: str) -> list[str]:
    return [
        name for name, spec in instance.version.handlers.items()
        if isinstance(spec, dict) and spec.get("type") == "event" and spec.get("event") == event
    ]


def _event_runs(instance: Instance, event: str, payload) -> list[HandlerRun]:
    return [
        HandlerRun(instance=instance, handler=name, trigger=Trigger.EVENT, input={"event": event, "payload": payload})
        for name in event_handlers(instance, event)
    ]


@transaction.atomic
def post_event(*, instance: Instance, event: str, payload=None) -> list[HandlerRun]:
    """Queue one run per event handler of ``instance`` for ``event``, each with input
    ``{"event": event, "payload": payload}``. A disabled instance, or an event no handler
    listens to, queues nothing (an empty list). An instance being installed, upgraded or
    uninstalled, or whose install failed, takes no events: NotLive (a Conflict), so the
    sender can try again. Raises InvalidInput for a bad event name
    or a payload the platform cannot store (``jsonvalues.check_value``), QuotaExceeded
    (``queue_full``) when the instance's queue has no room for the runs."""
    validate_event_name(event)
    try:
        jsonvalues.check_value(payload)
    except jsonvalues.JSONRefused as exc:
        raise InvalidInput(f"the payload is not valid JSON: {exc.message}", field="payload") from None
    # The stored flag, not the caller's copy: a disable that committed since must win.
    enabled, state = Instance.objects.filter(pk=instance.pk).values_list("enabled", "state").first() or (False, "")
    if not enabled:
        return []
    if state not in LIVE_STATES:
        raise NotLive(instance.name, state)
    runs = _event_runs(instance, event, payload)
    require_queue_room(instance=instance, adding=len(runs))
    # Sent through the ingress window: posts arrive one at a time, and one message per run
    # would cap the workers (runtime/ingress.py).
    return enqueue_runs(runs, send=ingress.send)


def polled_items(result) -> dict[str, object]:
    """A polling timer's result ``{items = {{id = ..., data = ...}, ...}}`` as item id →
    data, in the order returned, the first of each id kept; items without a usable id are
    skipped."""
    items = result.get("items") if isinstance(result, dict) else None
    if isinstance(items, dict):  # a Lua array can arrive as {1: ..., 2: ...}
        items = [items[k] for k in sorted(items, key=lambda k: int(k) if str(k).isdigit() else 0)]
    if not isinstance(items, list):
        return {}
    fresh: dict[str, object] = {}
    for item in items:
        if not isinstance(item, dict) or isinstance(item.get("id"), (dict, list, bool)) or item.get("id") is None:
            continue
        fresh.setdefault(str(item["id"])[:255], item.get("data"))
    return fresh


@transaction.atomic
def post_polled_items(run: HandlerRun) -> list[HandlerRun]:
    """A polling timer (``emits``) returned ``{items = {{id = ..., data = ...}, ...}}``:
    post each item whose id this (instance, handler) has not returned before as the
    ``emits`` event, payload ``data``, in the order returned. Remembers at most
    JUNCTION_POLL_SEEN_MAX ids per timer, forgetting the oldest first.

    At most JUNCTION_POLL_MAX_ITEMS new items are posted, and only as many as the
    instance's queue has room for; the rest are not remembered, so they are posted when a
    later poll returns them again, and a ``warn`` line on the run records how many waited."""
    run = HandlerRun.objects.select_related("instance__version").get(pk=run.pk)
    spec = run.instance.version.handlers.get(run.handler) or {}
    event = spec.get("emits") if spec.get("type") == "timer" else None
    fresh = polled_items(run.result) if event else {}
    if not fresh:
        return []
    known = set(
        SeenItem.objects.filter(instance=run.instance, handler=run.handler, item_id__in=list(fresh))
        .values_list("item_id", flat=True)
    )
    new_ids = [item_id for item_id in fresh if item_id not in known]
    if not new_ids:
        return []
    # The stored flag, as post_event reads it: items of a disabled (or not live) instance wait too.
    if not Instance.objects.filter(pk=run.instance_id, enabled=True, state__in=LIVE_STATES).exists():
        return []
    new_ids = _within_caps(run, new_ids, per_item=len(event_handlers(run.instance, event)))
    now = timezone.now()
    try:
        with transaction.atomic():
            SeenItem.objects.bulk_create([
                SeenItem(instance=run.instance, handler=run.handler, item_id=item_id, seen_at=now)
                for item_id in new_ids
            ])
    except IntegrityError:
        # Another worker posted some of them in the meantime: post only what we inserted.
        inserted = []
        for item_id in new_ids:
            try:
                with transaction.atomic():
                    SeenItem.objects.create(instance=run.instance, handler=run.handler, item_id=item_id, seen_at=now)
                inserted.append(item_id)
            except IntegrityError:
                pass
        new_ids = inserted
    _forget_oldest(run.instance, run.handler)
    runs = []
    for item_id in new_ids:
        runs += _event_runs(run.instance, event, fresh[item_id])
    return enqueue_runs(runs)


def _within_caps(run: HandlerRun, new_ids: list[str], *, per_item: int) -> list[str]:
    """The first of ``new_ids`` that JUNCTION_POLL_MAX_ITEMS and the instance's queue room
    allow (``per_item`` runs each); what is left waits for a later poll, said on the run."""
    cap = settings.JUNCTION_POLL_MAX_ITEMS
    allowed = min(len(new_ids), cap) if cap > 0 else len(new_ids)
    room = queue_rooms([run.instance_id])[run.instance_id] // per_item if per_item else allowed
    why = f"at most {cap} are posted per poll (JUNCTION_POLL_MAX_ITEMS)"
    if room < allowed:
        allowed = room
        why = (f"the instance's queue had room for {room} "
               f"(at most {settings.JUNCTION_INSTANCE_MAX_QUEUED_RUNS} queued runs)")
    waiting = len(new_ids) - allowed
    if waiting:
        message = (f"{waiting} of {len(new_ids)} new items wait for a later poll that returns them again: {why}")
        log.warning("run %s: %s", run.pk, message)
        line = {"level": "warn", "message": message, "fields": {"posted": allowed, "waiting": waiting}}
        if line not in run.logs:  # a redelivered follow-up says it once
            HandlerRun.objects.filter(pk=run.pk).update(logs=[*run.logs, line])
    return new_ids[:allowed]


def _forget_oldest(instance: Instance, handler: str) -> None:
    cap = settings.JUNCTION_POLL_SEEN_MAX
    seen = SeenItem.objects.filter(instance=instance, handler=handler)
    # Ids are inserted in the order items are seen, so the pk orders them by age.
    beyond = list(seen.order_by("-pk").values_list("pk", flat=True)[cap:cap + 1])
    if beyond:
        seen.filter(pk__lte=beyond[0]).delete()
