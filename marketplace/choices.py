"""Enumerations shared by models, forms and filters."""
from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    PUBLISHER = "publisher", "Publisher"
    MEMBER = "member", "Member"


class Visibility(models.TextChoices):
    PUBLIC = "public", "Public in the marketplace"
    PRIVATE = "private", "Private to its organization"


class VersionState(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"


class ResourceKind(models.TextChoices):
    HTTP = "http", "HTTP"
    SQL = "sql", "SQL"


class InstanceState(models.TextChoices):
    """Where an instance is in its life. Lifecycle handlers run outside any transaction
    (``services.installs``), so the moments they run in are states of their own."""

    ACTIVE = "active", "Active"
    FAILING = "failing", "Failing"
    INSTALLING = "installing", "Installing"
    UPGRADING = "upgrading", "Upgrading"
    UNINSTALLING = "uninstalling", "Uninstalling"
    FAILED = "failed", "Install failed"


# The states in which an instance's timers fire and its events are taken: installed and
# not in the middle of a lifecycle moment.
LIVE_STATES = (InstanceState.ACTIVE, InstanceState.FAILING)
# The moments whose handlers may be running: an instance stays in one only while they do.
TRANSITIONAL_STATES = (InstanceState.INSTALLING, InstanceState.UPGRADING, InstanceState.UNINSTALLING)


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Trigger(models.TextChoices):
    TIMER = "timer", "Timer"
    EVENT = "event", "Event"
    RPC = "rpc", "RPC"
    LIFECYCLE = "lifecycle", "Lifecycle"
    MANUAL = "manual", "Run now"
    REPLAY = "replay", "Replay"
    RETRY = "retry", "Retry"
