"""The shapes ``/api/v1/instances/`` reads and writes. Shapes only: the install services
check config against the configSchema, bindings against the manifest's resources and the
organization's devices."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..choices import InstanceState, RunStatus
from ..models import CacheEntry, ContainerEntry, HandlerRun, Instance

ORGANIZATION_HELP = ("Slug of the organization to install for; may be left out by a member of one organization.")
BINDINGS_HELP = "Each resource alias the manifest declares → the id of a device of the instance's organization."
WITHHELD = " Null when you see the instance as its integration's publisher (support fields only)."


class InstanceSerializer(serializers.ModelSerializer):
    """An instance as its organization's members see it; its integration's publishers get
    ``config``, ``bindings`` and ``last_error`` as null (``access.INSTANCE_SUPPORT_FIELDS``).
    Expects ``sees_data`` on the instance (``Instance.objects.with_data_flag``)."""

    organization = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    integration = serializers.SlugRelatedField(source="version.integration", slug_field="slug", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    state = serializers.ChoiceField(choices=InstanceState.choices, read_only=True)
    config = serializers.SerializerMethodField(help_text="Secret values show as \"********\"." + WITHHELD)
    bindings = serializers.SerializerMethodField(help_text=BINDINGS_HELP + WITHHELD)
    last_error = serializers.SerializerMethodField(help_text="Why the last install or upgrade failed." + WITHHELD)

    class Meta:
        model = Instance
        fields = ["id", "name", "organization", "integration", "version", "config", "bindings", "enabled", "state",
                  "last_error", "installed_at", "last_run_at"]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "additionalProperties": True, "nullable": True})
    def get_config(self, instance: Instance) -> dict | None:
        return instance.masked_config() if instance.sees_data else None

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "integer"}, "nullable": True})
    def get_bindings(self, instance: Instance) -> dict | None:
        if not instance.sees_data:
            return None
        return {binding.alias: binding.device_id for binding in instance.bindings.all()}

    @extend_schema_field({"type": "string", "nullable": True})
    def get_last_error(self, instance: Instance) -> str | None:
        return instance.last_error if instance.sees_data else None


class InstallSerializer(serializers.Serializer):
    integration = serializers.CharField(help_text="The integration's slug.")
    version = serializers.IntegerField(min_value=1, help_text="The published, available version's number.")
    name = serializers.CharField(required=False, allow_blank=True, max_length=120,
                                 help_text="Unique in the organization; the integration's name when left out.")
    config = serializers.JSONField(required=False, help_text="Values for the version's configSchema.")
    bindings = serializers.DictField(child=serializers.IntegerField(), required=False, help_text=BINDINGS_HELP)
    organization = serializers.CharField(required=False, help_text=ORGANIZATION_HELP)


class InstanceChangeSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=120)
    config = serializers.JSONField(
        required=False, help_text="The whole config, checked again in full; a secret sent back as \"********\" "
                                  "(or left out) keeps its value.")
    bindings = serializers.DictField(child=serializers.IntegerField(), required=False,
                                     help_text=BINDINGS_HELP + " The whole set.")
    enabled = serializers.BooleanField(required=False, help_text="A disabled instance keeps its data; nothing runs.")


class UpgradeSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, help_text="The number of another available version.")
    config = serializers.JSONField(required=False, help_text="The config for the new version; the current one "
                                                             "(checked against the new configSchema) when left out.")
    bindings = serializers.DictField(child=serializers.IntegerField(), required=False,
                                     help_text="Bindings to add or replace; aliases the new version still declares "
                                               "keep their devices.")


class RunErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="e.g. lua_error, timeout, input_invalid, output_invalid.")
    message = serializers.CharField()
    file = serializers.CharField(allow_blank=True)
    line = serializers.IntegerField(allow_null=True)


class RunOutcomeSerializer(serializers.ModelSerializer):
    """How a run that was made for the caller ended."""

    status = serializers.ChoiceField(choices=[RunStatus.SUCCEEDED, RunStatus.FAILED])
    result = serializers.JSONField(allow_null=True)
    error = serializers.SerializerMethodField()
    logs = serializers.ListField(child=serializers.DictField())
    run = serializers.IntegerField(source="pk", help_text="The run's id (runs/{id}/).")

    class Meta:
        model = HandlerRun
        fields = ["status", "result", "error", "logs", "duration_ms", "run", "handler"]
        read_only_fields = fields

    @extend_schema_field(RunErrorSerializer(allow_null=True))
    def get_error(self, run: HandlerRun) -> dict | None:
        if not run.error_code:
            return None
        return {"code": run.error_code, "message": run.error_message, "file": run.error_file, "line": run.error_line}


class PingSerializer(serializers.Serializer):
    runs = RunOutcomeSerializer(many=True, help_text="One per ping handler, in name order; none without one.")


class EventRunsSerializer(serializers.Serializer):
    event = serializers.CharField()
    runs = serializers.ListField(child=serializers.IntegerField(), help_text="The queued runs' ids (none when the "
                                                                          "instance is disabled or no handler listens).")


class ContainerEntrySerializer(serializers.ModelSerializer):
    value = serializers.JSONField()

    class Meta:
        model = ContainerEntry
        fields = ["container", "key", "value", "size", "updated_at"]


class CacheEntrySerializer(serializers.ModelSerializer):
    value = serializers.JSONField()

    class Meta:
        model = CacheEntry
        fields = ["key", "value", "size", "expires_at"]


class StorageSerializer(serializers.Serializer):
    containers = ContainerEntrySerializer(many=True, help_text="Data container entries, by container and key.")
    cache = CacheEntrySerializer(many=True, help_text="The instance's cache entries not expired, by key.")
