"""The site's URLs, plus stand-ins for ``POST integrations/`` and ``DELETE integrations/{slug}/``
to API.md's contract, for the remote push tests while this branch has no catalog endpoints.
The site's own routes come first: once the real endpoints exist, the stand-ins are never
reached. Each request a stand-in receives is recorded in ``received``; ``fail_deletes`` makes DELETE refuse."""
from __future__ import annotations

from django.urls import path
from rest_framework import status
from rest_framework.decorators import api_view
from rest_framework.response import Response

from marketplace import access
from marketplace.querysets import PUBLISHING_ROLES
from marketplace.services.catalog import create_integration
from marketplace.services.deletion import delete_integration
from marketplace.urls import urlpatterns as site

received: list[tuple[str, str, dict]] = []
fail_deletes = False  # a test sets it to see a push whose clean-up is refused


@api_view(["POST"])
def create(request):
    received.append(("POST", request.path, dict(request.data)))
    data = request.data
    organization = access.get_organization_for(request.user, data.get("organization"), PUBLISHING_ROLES)
    integration = create_integration(
        organization=organization, name=data.get("name", ""), slug=data.get("slug"), summary=data.get("summary", ""),
        description=data.get("description", ""), visibility=data.get("visibility", "public"), user=request.user,
    )
    return Response({"slug": integration.slug, "name": integration.name, "organization": organization.slug},
                    status=status.HTTP_201_CREATED)


@api_view(["DELETE"])
def delete(request, slug: str):
    received.append(("DELETE", request.path, {}))
    if fail_deletes:
        return Response({"error": {"code": "conflict", "message": "not now"}}, status=status.HTTP_409_CONFLICT)
    delete_integration(integration=access.get_integration_for(request.user, slug, write=True), user=request.user)
    return Response(status=status.HTTP_204_NO_CONTENT)


urlpatterns = [
    *site,
    path("api/v1/integrations/", create),
    path("api/v1/integrations/<slug:slug>/", delete),
]
