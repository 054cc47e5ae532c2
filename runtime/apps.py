from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_periodic_tasks(sender, **kwargs) -> None:
    from .schedules import ensure_periodic_tasks

    ensure_periodic_tasks()


class RuntimeConfig(AppConfig):
    name = "runtime"
    verbose_name = "Junction runtime"

    def ready(self) -> None:
        # The beat entries this app owns exist after every migrate (idempotent).
        post_migrate.connect(_ensure_periodic_tasks, sender=self, dispatch_uid="runtime.ensure_periodic_tasks")
