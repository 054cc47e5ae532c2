"""Device DSNs (which may hold a database password) are encrypted at rest like the
credentials: the column becomes text holding Fernet ciphertext, and existing rows are
encrypted in place. Rows are read and written with plain SQL, since the model's field
would try to decrypt the plain text that is still there. Reversible: decrypts back."""
import django.core.validators
from django.db import migrations

import marketplace.fields
from marketplace.crypto import decrypt_json, encrypt_json


def _rewrite(schema_editor, change) -> None:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, dsn FROM marketplace_device WHERE dsn <> ''")
        rows = cursor.fetchall()
        for pk, stored in rows:
            new = change(stored)
            if new != stored:
                cursor.execute("UPDATE marketplace_device SET dsn = %s WHERE id = %s", [new, pk])


def _is_ciphertext(value: str) -> bool:
    try:
        decrypt_json(value)
    except ValueError:
        return False
    return True


def encrypt_dsns(apps, schema_editor):
    _rewrite(schema_editor, lambda dsn: dsn if _is_ciphertext(dsn) else encrypt_json(dsn))


def decrypt_dsns(apps, schema_editor):
    _rewrite(schema_editor, lambda dsn: decrypt_json(dsn) if _is_ciphertext(dsn) else dsn)


class Migration(migrations.Migration):

    dependencies = [
        ("marketplace", "0004_attachments_private_storage"),
    ]

    operations = [
        # First the wider column (ciphertext is longer than the 500 characters allowed so far).
        migrations.AlterField(
            model_name="device",
            name="dsn",
            field=marketplace.fields.EncryptedTextField(
                blank=True,
                help_text="For SQL devices: postgresql://user:password@host/db, or sqlite:///name.sqlite3 for a file "
                          "in your organization's device folder. Encrypted at rest; the password is shown masked.",
                validators=[django.core.validators.MaxLengthValidator(500)],
            ),
        ),
        migrations.RunPython(encrypt_dsns, decrypt_dsns),
    ]
