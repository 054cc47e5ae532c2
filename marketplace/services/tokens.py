"""Personal API tokens: create (the secret returned once) and revoke."""
from __future__ import annotations

import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..exceptions import InvalidInput, NotFound
from ..models import ApiToken

PREFIX = "jct_"
# last_used_at is written at most this often per token, so authenticated traffic does not
# turn every request into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def create_api_token(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    """A new token for ``user`` and its secret, which is not stored and cannot be shown again."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("name your token (e.g. the script or machine that uses it)", field="name")
    if len(name) > 100:
        raise InvalidInput("at most 100 characters", field="name")
    secret = PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            token = ApiToken.objects.create(user=user, name=name, prefix=secret[:8], digest=ApiToken.digest_of(secret))
    except IntegrityError:
        raise InvalidInput(f"you already have a token named {name!r}", field="name") from None
    return token, secret


def revoke_api_token(*, user: AbstractBaseUser, token_id: object) -> None:
    deleted, _ = ApiToken.objects.of(user).filter(pk=token_id).delete() if str(token_id).isdigit() else (0, None)
    if not deleted:
        raise NotFound(f"no token {token_id} among yours")


def user_for_token(secret: str) -> tuple[AbstractBaseUser, ApiToken] | None:
    """The active user a token secret belongs to, or None; notes when the token was used."""
    if not secret.startswith(PREFIX):
        return None
    token = ApiToken.objects.select_related("user").filter(digest=ApiToken.digest_of(secret)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token.user, token
