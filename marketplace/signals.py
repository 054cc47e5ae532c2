"""Stored files follow their rows. post_delete fires for every row a cascade removes
(Django disables fast-delete when a receiver exists), so deleting an integration from
anywhere removes its icon and attachment files too; removal waits for the commit so a
rolled-back delete keeps its files."""
from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from .models import Attachment, Integration


def delete_file_on_commit(field_file) -> None:
    if not field_file:
        return
    storage, name = field_file.storage, field_file.name
    transaction.on_commit(lambda: storage.delete(name))


@receiver(post_delete, sender=Integration)
def remove_icon_files(sender, instance: Integration, **kwargs) -> None:
    delete_file_on_commit(instance.icon)
    delete_file_on_commit(instance.icon_thumbnail)


@receiver(post_delete, sender=Attachment)
def remove_attachment_file(sender, instance: Attachment, **kwargs) -> None:
    delete_file_on_commit(instance.file)
