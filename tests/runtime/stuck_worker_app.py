"""Test-only Celery app for test_watchdog's real worker (``celery -A tests.runtime.stuck_worker_app
worker``): the Junction app, with ``ctx.log.warn`` made to block in Python in every pool
process, as code stuck inside a C function would (no hook runs there). The watchdog must
end such a run whatever hole of the sandbox it stands for."""
from __future__ import annotations

import time

from celery.signals import worker_process_init

from marketplace.celery import app

__all__ = ["app"]


@worker_process_init.connect
def _block_log_warn(**kwargs) -> None:
    from runtime.ctx import Ctx

    call = Ctx.call

    def stuck(self, name, args, deadline):
        if name == "log.warn":
            time.sleep(3600)
        return call(self, name, args, deadline)

    Ctx.call = stuck
