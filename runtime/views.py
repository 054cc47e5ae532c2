"""The per-instance webhook: ``POST /hooks/<token>/<event>`` with a JSON body posts that
event to the instance whose secret ``webhook_token`` is in the URL."""
from __future__ import annotations

import json

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from marketplace.exceptions import InvalidInput, QuotaExceeded
from marketplace.models import Instance

from .events import post_event

WEBHOOK_RETRY_AFTER_SECONDS = 30


@csrf_exempt  # called by other systems, authenticated by the secret token in the URL
@require_POST
def webhook(request, token: str, event: str):
    """202 with the queued run ids; 404 for an unknown token; 400 for a bad event name or
    a body that is not JSON; 429 (code ``queue_full``, with Retry-After) when the
    instance's queue is full; 413 for a body over JUNCTION_WEBHOOK_MAX_BYTES. An empty body
    is a null payload. A disabled instance accepts the event and queues nothing."""
    instance = Instance.objects.select_related("version").filter(webhook_token=token).first()
    if instance is None:
        return JsonResponse({"error": "unknown webhook"}, status=404)
    cap = settings.JUNCTION_WEBHOOK_MAX_BYTES
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > cap:
        return JsonResponse({"error": f"the body must be at most {cap} bytes"}, status=413)
    body = request.read(cap + 1)
    if len(body) > cap:
        return JsonResponse({"error": f"the body must be at most {cap} bytes"}, status=413)
    try:
        payload = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "the body must be JSON"}, status=400)
    try:
        runs = post_event(instance=instance, event=event, payload=payload)
    except InvalidInput as exc:
        return JsonResponse({"error": exc.message}, status=400)
    except QuotaExceeded as exc:  # the instance's queue is full: the sender should retry later
        response = JsonResponse({"error": exc.message, "code": exc.code}, status=429)
        response["Retry-After"] = str(WEBHOOK_RETRY_AFTER_SECONDS)
        return response
    return JsonResponse({"event": event, "runs": [run.pk for run in runs]}, status=202)
