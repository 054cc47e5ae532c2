"""Building instances with handlers of a test's choosing, for the runtime tests."""
from __future__ import annotations

from marketplace.models import Instance, Organization
from marketplace.services.installs import install_version

from .. import factories

PERMISSIONS = ["integration.containers", "integration.cache", "log"]


def manifest(handlers: dict, **extra) -> dict:
    return {
        "name": "runtime-test",
        "title": "Runtime test",
        "configSchema": {"type": "object", "properties": {}},
        "resources": {},
        "permissions": PERMISSIONS,
        "dataContainerSchemas": {"beats": {"type": "object"}},
        "handlers": handlers,
        **extra,
    }


TIMER_LUA = """
function tick(ctx, input)
  ctx.integration.containersSet("beats", "last", { lastRunAt = input.lastRunAt or "none" })
  return { ok = true }
end
"""


def timer(every: str = "1m", **extra) -> dict:
    return {"type": "timer", "file": "main.lua", "function": "tick", "schedule": {"every": every}, **extra}


def make_runtime_version(handlers: dict, files: dict | None = None, integration=None, **extra):
    return factories.make_published(
        integration, manifest=manifest(handlers, **extra), files=files or {"main.lua": TIMER_LUA}
    )


def install(handlers: dict | None = None, files: dict | None = None, *, organization: Organization | None = None,
            version=None, name: str | None = None) -> Instance:
    """Install (through the service) a version with ``handlers``: one 1-minute timer by default."""
    version = version or make_runtime_version(handlers if handlers is not None else {"tick": timer()}, files)
    organization = organization or factories.make_org()
    return install_version(version=version, organization=organization, name=name or "", config={}, bindings={})
