"""Model fields of Junction's own."""
from __future__ import annotations

from django.db import models

from .crypto import decrypt_json, encrypt_json


class EncryptedJSONField(models.TextField):
    """JSON stored Fernet-encrypted. The database only ever sees ciphertext; Python code
    sees the decrypted value, so reading it must stay in code that is allowed to."""

    description = "Encrypted JSON"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("default", dict)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return {}
        return decrypt_json(value)

    def to_python(self, value):
        return value

    def get_prep_value(self, value):
        return encrypt_json(value if value is not None else {})


class EncryptedTextField(models.TextField):
    """A string stored Fernet-encrypted (as a JSON string); an empty string is stored as
    is, since there is nothing to hide. Python code sees the plain text."""

    description = "Encrypted text"

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return ""
        return decrypt_json(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return encrypt_json(value) if value else ""
