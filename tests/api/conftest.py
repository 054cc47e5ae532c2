"""API fixtures: a client per persona, authenticated with a real personal token."""
from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from marketplace.services.tokens import create_api_token


@pytest.fixture(autouse=True)
def throttle_counts_cleared():
    """Throttle counters live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api():
    """``api(user)``: an APIClient sending ``user``'s token; ``api(None)`` is anonymous."""
    return client_for


@pytest.fixture
def anon(db):
    return client_for(None)


# --- No secret in any response ----------------------------------------------------------------
# Tests register every secret they set (device credentials, secret config values, DSN
# passwords) with ``secret(value)``; after the test, every response body any API client of
# the test received is scanned for each of them. Token secrets are checked the same way,
# except in the one response that creates them.
_responses: list = []
_secrets: set[str] = set()


class RecordingClient(APIClient):
    def request(self, **kwargs):
        response = super().request(**kwargs)
        _responses.append(response)
        return response


def client_for(user) -> APIClient:
    """An API client sending a fresh personal token of ``user``'s (anonymous for None)."""
    client = RecordingClient()
    if user is not None:
        _, token = create_api_token(user=user, name=f"tests-{user.pk}-{len(_responses)}")
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        client.secret = token
        _secrets.add(token)
    return client


@pytest.fixture
def secret():
    """``secret("s3cr3t")`` registers a value no API response of this test may contain."""
    def register(value: str) -> str:
        _secrets.add(value)
        return value
    return register


@pytest.fixture(autouse=True)
def no_secret_in_any_response():
    _responses.clear()
    _secrets.clear()
    yield
    leaks = []
    for response in _responses:
        body = getattr(response, "content", b"") if not getattr(response, "streaming", False) else b""
        text = body.decode("utf-8", "replace")
        for value in _secrets:
            if value in text and not (response.status_code == 201 and '"token"' in text):
                leaks.append((response.request.get("PATH_INFO"), response.status_code, value))
    _responses.clear()
    _secrets.clear()
    assert not leaks, f"secrets found in API responses: {leaks}"
