"""The site's URLs with the integration endpoints the remote push calls wrapped, so the tests
see what the push sent: each request to ``integrations/`` and ``integrations/{slug}/`` is
recorded in ``received`` before the real view answers it; ``fail_deletes`` makes DELETE
answer 409 instead (a push whose clean-up is refused)."""
from __future__ import annotations

import json

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from marketplace.api.integrations import IntegrationViewSet
from marketplace.urls import urlpatterns as site

received: list[tuple[str, str, dict]] = []
fail_deletes = False

_list = IntegrationViewSet.as_view({"get": "list", "post": "create"})
_detail = IntegrationViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})


def _record(request) -> None:
    body = json.loads(request.body) if request.body and request.content_type == "application/json" else {}
    received.append((request.method, request.path, body))


@csrf_exempt
def integrations(request):
    _record(request)
    return _list(request)


@csrf_exempt
def integration(request, slug: str):
    _record(request)
    if request.method == "DELETE" and fail_deletes:
        return JsonResponse({"error": {"code": "conflict", "message": "not now"}}, status=409)
    return _detail(request, slug=slug)


urlpatterns = [
    path("api/v1/integrations/", integrations),
    path("api/v1/integrations/<slug:slug>/", integration),
    *site,
]
