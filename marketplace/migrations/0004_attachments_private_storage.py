"""Attachments move from MEDIA_ROOT, which the development server and the production proxy
serve to anyone, to the private storage, which only the download view reads."""
from django.db import migrations, models

import marketplace.models.media
import marketplace.storages


def move(names, source, target) -> None:
    for name in names:
        if not source.exists(name) or target.exists(name):
            continue
        with source.open(name, "rb") as handle:
            saved = target.save(name, handle)
        if saved != name:  # cannot happen after the exists() check; never lose the old copy if it does
            raise RuntimeError(f"attachment {name} was stored as {saved}")
        source.delete(name)


def to_private(apps, schema_editor):
    from django.core.files.storage import default_storage

    names = apps.get_model("marketplace", "Attachment").objects.values_list("file", flat=True)
    move(list(names), default_storage, marketplace.storages.private_storage())


def to_public(apps, schema_editor):
    from django.core.files.storage import default_storage

    names = apps.get_model("marketplace", "Attachment").objects.values_list("file", flat=True)
    move(list(names), marketplace.storages.private_storage(), default_storage)


class Migration(migrations.Migration):

    dependencies = [
        ("marketplace", "0003_published_versions_frozen"),
    ]

    operations = [
        migrations.AlterField(
            model_name="attachment",
            name="file",
            field=models.FileField(
                max_length=300, storage=marketplace.storages.private_storage,
                upload_to=marketplace.models.media.attachment_path,
            ),
        ),
        migrations.RunPython(to_private, to_public, elidable=True),
    ]
