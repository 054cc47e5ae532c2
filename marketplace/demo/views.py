"""Pretend devices for the demo catalog, served by the development server itself so the
demo instances have real HTTP targets. Mounted only when DEBUG is on."""
from __future__ import annotations

import json

from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods


@require_http_methods(["GET"])
def printer_status(request):
    return JsonResponse({"state": "ready", "paper": "A4", "queue": 2, "at": timezone.now().isoformat()})


@csrf_exempt
@require_http_methods(["POST"])
def chat_message(request):
    try:
        message = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"error": "body must be JSON"}, status=400)
    return JsonResponse({"ok": True, "echo": message}, status=201)


@require_http_methods(["GET"])
def chat_health(request):
    return JsonResponse({"ok": True})
