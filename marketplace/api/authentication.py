"""Personal API tokens over HTTP: ``Authorization: Bearer <token>`` (or ``Token <token>``)."""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from ..services.tokens import user_for_token

KEYWORDS = {"bearer", "token"}


class TokenAuthentication(authentication.BaseAuthentication):
    """Listed first in settings so that a request without credentials gets 401 with
    ``WWW-Authenticate: Bearer`` (DRF answers 403 when the first class names no scheme)."""

    def authenticate(self, request):
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].decode("latin-1").lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("send the token as 'Authorization: Bearer <token>'")
        try:
            secret = parts[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("invalid token") from None
        found = user_for_token(secret)
        if found is None:
            raise exceptions.AuthenticationFailed("invalid or revoked token")
        return found

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


def token_user(request):
    """The user whose API token a plain Django request sends (``Authorization: Bearer``),
    or None: lets a page that API responses link to (an attachment's ``download_url``)
    serve token holders as it serves sessions. A bad token counts as none."""
    try:
        found = TokenAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed:
        return None
    return found[0] if found else None


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "marketplace.api.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token (POST /api/v1/tokens/ or manage.py create_api_token), "
                           "sent as 'Authorization: Bearer <token>'; 'Token <token>' is accepted too.",
        }
