from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_periodic_tasks(sender, **kwargs) -> None:
    from .schedules import ensure_periodic_tasks

    ensure_periodic_tasks()


class RuntimeConfig(AppConfig):
    name = "runtime"
    verbose_name = "Junction runtime"

    def ready(self) -> None:
        from marketplace.hooks import RuntimeHooks, register_runtime

        from . import device_checks, events, lifecycle, runs, schedules, worker

        # The domain runs lifecycle handlers and keeps timers in step through these: it
        # never imports the runtime, which builds on it (marketplace/hooks.py).
        register_runtime(RuntimeHooks(
            lifecycle_handlers=lifecycle.lifecycle_handlers,
            run_lifecycle=lifecycle.run_lifecycle,
            ping_instance=lifecycle.ping_instance,
            sync_schedules=schedules.sync_schedules,
            run_now=worker.run_now,
            post_event=events.post_event,
            probe_device=device_checks.probe,
            update_timer=schedules.update_timer,
            run_timer_now=runs.run_timer_now,
            replay_run=runs.replay_run,
        ))
        # The beat entries this app owns exist after every migrate (idempotent).
        post_migrate.connect(_ensure_periodic_tasks, sender=self, dispatch_uid="runtime.ensure_periodic_tasks")
