"""Enumerations shared by models, forms, serializers and filters."""
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
    ACTIVE = "active", "Active"
    FAILING = "failing", "Failing"


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
