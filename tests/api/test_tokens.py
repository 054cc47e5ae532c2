"""Personal API tokens: created with the secret shown once, hashed at rest, listed without
secrets, revoked; and the one error shape for authentication failures."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from marketplace.models import ApiToken

from .conftest import client_for


def test_create_shows_the_secret_once_and_stores_only_its_hash(api, member):
    client = api(member)
    response = client.post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert response.status_code == 201
    secret = response.json()["token"]
    assert secret.startswith("jct_") and len(secret) > 40
    token = ApiToken.objects.get(pk=response.json()["id"])
    assert secret not in (token.digest, token.prefix) and token.digest == ApiToken.digest_of(secret)
    listed = client.get("/api/v1/tokens/").json()
    assert "ci" in {t["name"] for t in listed["results"]} and listed["count"] == 2
    assert secret not in str(listed) and all("token" not in t for t in listed["results"])


def test_bearer_and_token_keywords_both_authenticate_and_record_last_use(member):
    client = client_for(member)
    assert client.get("/api/v1/tokens/").status_code == 200
    other = client_for(None)
    other.credentials(HTTP_AUTHORIZATION=f"Token {client.secret}")
    assert other.get("/api/v1/tokens/").status_code == 200
    assert ApiToken.objects.get(digest=ApiToken.digest_of(client.secret)).last_used_at is not None


@pytest.mark.parametrize("header", ["Bearer jct_not-a-real-token", "Bearer", "Token a b", "Bearer nope"])
def test_bad_credentials_answer_401_in_the_error_shape(anon, header):
    anon.credentials(HTTP_AUTHORIZATION=header)
    response = anon.get("/api/v1/tokens/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_no_credentials_answers_401_not_403(anon):
    response = anon.get("/api/v1/tokens/")
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "not_authenticated",
                                         "message": "Authentication credentials were not provided."}}


def test_revoked_token_stops_working_and_only_its_owner_revokes_it(member, outsider):
    mine = client_for(member)
    theirs = client_for(outsider)
    token_id = ApiToken.objects.get(digest=ApiToken.digest_of(mine.secret)).pk
    response = theirs.delete(f"/api/v1/tokens/{token_id}/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert mine.get("/api/v1/tokens/").status_code == 200
    assert theirs.get("/api/v1/tokens/").json()["count"] == 1  # their own only
    assert mine.delete(f"/api/v1/tokens/{token_id}/").status_code == 204
    assert mine.get("/api/v1/tokens/").status_code == 401


def test_inactive_user_token_is_refused(member):
    client = client_for(member)
    member.is_active = False
    member.save()
    assert client.get("/api/v1/tokens/").status_code == 401


def test_token_name_is_required_and_unique_per_user(api, member):
    client = api(member)
    response = client.post("/api/v1/tokens/", {"name": "  "}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["name"]
    assert client.post("/api/v1/tokens/", {"name": "ci"}, format="json").status_code == 201
    again = client.post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert again.status_code == 400 and "already" in again.json()["error"]["fields"]["name"][0]


def test_create_api_token_command_prints_a_working_token(member):
    out = io.StringIO()
    call_command("create_api_token", member.username, "--name", "script", stdout=out)
    secret = out.getvalue().strip()
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/tokens/").status_code == 200
    with pytest.raises(CommandError, match="no user"):
        call_command("create_api_token", "ghost", "--name", "x")


def test_throttled_answers_429_with_retry_after(settings, member):
    client = client_for(member)
    from rest_framework.throttling import UserRateThrottle

    original = UserRateThrottle.THROTTLE_RATES
    UserRateThrottle.THROTTLE_RATES = {**original, "user": "3/min"}
    try:
        statuses = [client.get("/api/v1/tokens/").status_code for _ in range(4)]
    finally:
        UserRateThrottle.THROTTLE_RATES = original
    assert statuses == [200, 200, 200, 429]
    response = client.get("/api/v1/tokens/")
    assert response.status_code in (200, 429)


def test_unknown_path_and_bad_json_follow_the_error_shape(api, member):
    client = api(member)
    response = client.post("/api/v1/tokens/", data="{not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "parse_error"
