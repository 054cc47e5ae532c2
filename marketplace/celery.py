"""The Celery application shared by the web process, workers and beat."""
import logging
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

app = Celery("junction")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["marketplace", "runtime"])

# Beat sends the dispatcher tick every second. Celery's own lines for it (beat's "Sending due
# task", the worker's "received" and "succeeded") would be most of an idle worker's log; the
# tick logs what it did itself when it did something (runtime.dispatcher.dispatch_due).
TICK_TASKS = frozenset({"runtime.tasks.dispatch_timers"})


class TickLinesAtDebug(logging.Filter):
    """Turns Celery's INFO lines about a tick task into DEBUG lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not _about_tick(record.args):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _about_tick(args) -> bool:
    if isinstance(args, dict):  # the worker: LOG_RECEIVED / LOG_SUCCESS with a mapping
        return args.get("name") in TICK_TASKS
    return isinstance(args, tuple) and any(isinstance(arg, str) and arg in TICK_TASKS for arg in args)  # beat


# Logger filters see only records logged on that very logger; forked pool processes inherit them.
for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
    logging.getLogger(name).addFilter(TickLinesAtDebug())
