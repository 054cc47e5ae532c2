"""How every API answer shows a run's error: ``{code, message, file, line}`` or null. Used by
the runs/ resource (runtime/api.py) and by the answers of ping and RPC calls."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import HandlerRun


class RunErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="e.g. lua_error, timeout, input_invalid, output_invalid.")
    message = serializers.CharField()
    file = serializers.CharField(allow_null=True, help_text="The bundle file the error was raised in, if known.")
    line = serializers.IntegerField(allow_null=True)


def run_error(run: HandlerRun) -> dict | None:
    if not run.error_code:
        return None
    return {"code": run.error_code, "message": run.error_message, "file": run.error_file or None,
            "line": run.error_line}


@extend_schema_field(RunErrorSerializer(allow_null=True))
class RunErrorField(serializers.Field):
    """A run's error, else null. Not read-only, so that the schema can leave it out of
    ``required`` where only some callers get it."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(source="*", **kwargs)

    def to_representation(self, run: HandlerRun) -> dict | None:
        return run_error(run)
