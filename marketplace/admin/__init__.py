"""The publishers' console (Django admin).

Who sees what: superusers see everything. A staff user with an owner or publisher
membership sees the rows of those organizations (integrations and what hangs off them:
versions, attachments, API schemas, instances, devices, runs), with foreign-key choices
limited to them. Permissions come from membership roles (``marketplace.access``), not
from Django's per-model permissions, so a publisher needs no grants: ``is_staff`` and a
membership are enough. ``mixins.ScopedAdmin`` implements this for every page.

Every write goes through ``marketplace.services``; a service's refusal becomes a form
error or an admin message and nothing of the request is kept (``saving``).

The pages for the runtime's rows (runs, timers, seen items) are the runtime's own
(``runtime/admin.py``, on these mixins): marketplace never imports runtime.
"""
from . import (  # noqa: F401 (registration)
    devices,
    instances,
    integrations,
    media,
    organizations,
    packaging,  # noqa: F401 (registration: API index, version validate/diff/export)
    storage,
    versions,
)
