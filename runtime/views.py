"""The per-instance webhook: ``POST /hooks/<token>/<event>`` with a JSON body posts that
event to the instance whose secret ``webhook_token`` is in the URL."""
from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from marketplace import jsonvalues
from marketplace.exceptions import InvalidInput, QuotaExceeded
from marketplace.models import Instance

from . import throttle
from .events import NotLive, post_event

WEBHOOK_RETRY_AFTER_SECONDS = 30


def refusal(status: int, code: str, message: str, fields: dict | None = None) -> JsonResponse:
    """One error shape for every webhook refusal, so a caller handles them alike."""
    error = {"code": code, "message": message, **({"fields": fields} if fields else {})}
    return JsonResponse({"error": error}, status=status)


@csrf_exempt  # called by other systems, authenticated by the secret token in the URL
@require_POST
def webhook(request, token: str, event: str):
    """202 with the queued run ids; 404 for an unknown token; 400 for a bad event name or
    a body that is not JSON the platform accepts (``marketplace.jsonvalues``: no NaN or
    Infinity, no lone surrogates or NUL, no duplicate keys, nesting at most
    JUNCTION_JSON_MAX_DEPTH); 429 (code ``throttled``, with Retry-After) past the instance's
    JUNCTION_WEBHOOK_RATE (``runtime.throttle``); 429 (code ``queue_full``, with Retry-After) when the
    instance's queue is full; 409 (code ``not_live``, with Retry-After) while the instance
    is being installed, upgraded or uninstalled, or after its install failed; 413 for a body over JUNCTION_WEBHOOK_MAX_BYTES. An empty body
    is a null payload. A disabled instance accepts the event and queues nothing.
    Refusals are ``{"error": {"code", "message"}}`` and queue nothing."""
    instance = Instance.objects.select_related("version").filter(webhook_token=token).first()
    if instance is None:
        return refusal(404, "not_found", "unknown webhook")
    wait = throttle.take(instance.pk)
    if wait:
        seconds = throttle.retry_after(wait)
        response = refusal(429, "throttled", f"this webhook takes {settings.JUNCTION_WEBHOOK_RATE:g} posts a second "
                                             f"(bursts of {settings.JUNCTION_WEBHOOK_BURST}): retry in {seconds} s")
        response["Retry-After"] = seconds
        return response
    payload, refused = read_payload(request)
    if refused is not None:
        return refused
    return posted(lambda: (event, post_event(instance=instance, event=event, payload=payload)))


def read_payload(request) -> tuple[object, JsonResponse | None]:
    """(the JSON body, None), or (None, the refusal): 413 over JUNCTION_WEBHOOK_MAX_BYTES,
    400 for JSON the platform does not accept. An empty body is a null payload."""
    cap = settings.JUNCTION_WEBHOOK_MAX_BYTES
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > cap:
        return None, refusal(413, "too_large", f"the body must be at most {cap} bytes")
    body = request.read(cap + 1)
    if len(body) > cap:
        return None, refusal(413, "too_large", f"the body must be at most {cap} bytes")
    try:
        return (jsonvalues.loads(body) if body.strip() else None), None
    except jsonvalues.JSONRefused as exc:
        return None, refusal(400, exc.code, f"the body is not valid JSON: {exc.message}")


def posted(post: Callable[[], tuple[str, list]]) -> JsonResponse:
    """202 with the event and the runs ``post`` queued, or the refusal for what it raised."""
    try:
        event, runs = post()
    except InvalidInput as exc:
        return refusal(400, "invalid", exc.message, exc.errors)
    except NotLive as exc:  # being installed, upgraded or uninstalled: the sender should retry later
        response = refusal(409, exc.code, exc.message)
        response["Retry-After"] = str(WEBHOOK_RETRY_AFTER_SECONDS)
        return response
    except QuotaExceeded as exc:  # the instance's queue is full: the sender should retry later
        response = refusal(429, exc.code, exc.message)
        response["Retry-After"] = str(WEBHOOK_RETRY_AFTER_SECONDS)
        return response
    return JsonResponse({"event": event, "runs": [run.pk for run in runs]}, status=202)
