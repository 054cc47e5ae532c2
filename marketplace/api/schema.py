"""The OpenAPI schema's shared parts: every operation documents the error responses it can
give, in the one error shape (``errors.Error``), next to the successes its view declares."""
from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework.permissions import AllowAny

from .errors import Error

ERRORS = {
    "400": "Bad input (a body, or a filter's value): `fields` names each field and why.",
    "401": "No credentials, or an invalid or revoked token.",
    "403": "Known, but not allowed (e.g. a member who is not a publisher).",
    "404": "No such object among those you may reach (another organization's answers the same); "
           "on a write, an object it names (organization, integration, device); on a list, no such page.",
    "409": "The object's state forbids it (e.g. a published version, a bound device).",
    "413": "Too large: the upload is past the platform's size limit.",
    "429": "Throttled: retry after the `Retry-After` header's seconds.",
}
WRITE_METHODS = {"POST", "PUT", "PATCH"}
PAGING = {"page", "page_size"}


class JunctionAutoSchema(AutoSchema):
    # Statuses a view can add to through ``extend_schema(responses=...)``; these are the ones
    # every operation of its kind can give whatever it does.
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        method = self.method.upper()
        codes = ["429"]
        if not any(isinstance(p, AllowAny) for p in self.view.get_permissions()) or method != "GET":
            codes.append("401")
        # A write names things too (an organization, an integration, a device): one the
        # caller may not reach is a 404 as on a detail URL.
        if ("{" in self.path or "pk" in getattr(self.view, "kwargs", {}) or self._is_detail()
                or self._is_paged() or method in WRITE_METHODS):
            codes.append("404")
        if method in WRITE_METHODS or self._has_query_input():
            codes.append("400")
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(OpenApiResponse(Error, description=ERRORS[code]), code)
        return dict(sorted(responses.items()))

    def _is_detail(self) -> bool:
        return bool(self.path_regex and "(?P<" in self.path_regex)

    def _has_query_input(self) -> bool:
        # Filters (choices, numbers, slugs) answer 400 with the field for a value they cannot read.
        return self.method.upper() == "GET" and any(
            parameter["in"] == "query" and parameter["name"] not in PAGING for parameter in self._get_parameters())

    def _is_paged(self) -> bool:
        # A page past the last one (or ?page=0) is DRF's 404 "Invalid page." on every list.
        return self.method.upper() == "GET" and self._is_list_view() and self._get_paginator() is not None


def error_responses(*codes: int) -> dict:
    """``extend_schema(responses={**error_responses(409), ...})`` for statuses only some
    operations give."""
    return {code: OpenApiResponse(Error, description=ERRORS[str(code)]) for code in codes}
