"""Encryption of secrets at rest with Fernet (keys from ``JUNCTION_SECRETS_KEYS``)."""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.JUNCTION_SECRETS_KEYS))


def encrypt_json(value: Any) -> str:
    return fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> Any:
    try:
        return json.loads(fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise ValueError("secret cannot be decrypted with the configured JUNCTION_SECRETS_KEYS") from exc
