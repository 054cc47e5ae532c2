"""``/api/v1/devices/``: the caller's organizations' devices (``services.devices``).

Credentials and headers are write-only: a response never holds them. A DSN comes back with
its password masked; sent back masked in a PATCH, the stored password is kept."""
from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response

from .. import access
from ..choices import ResourceKind
from ..models import Device
from ..services import devices
from ..validators import masked_dsn
from .schema import error_responses

SECRET_HELP = ("Write-only: never returned. In a PATCH, leave it out to keep it, send an object to replace it, "
               "{} to clear it.")


class DeviceSerializer(serializers.ModelSerializer):
    organization = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, help_text="The owning organization's slug.")
    kind = serializers.ChoiceField(choices=ResourceKind.choices)
    base_url = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                     help_text="HTTP devices: scheme, host, port and optional base path.")
    dsn = serializers.SerializerMethodField(
        help_text="SQL devices: the DSN, its password masked.")

    class Meta:
        model = Device
        # credentials and headers are write-only (DeviceWriteSerializer): never read back.
        fields = ["id", "name", "kind", "base_url", "dsn", "organization", "created_at"]
        read_only_fields = fields

    def get_dsn(self, device: Device) -> str:
        return masked_dsn(device.dsn) if device.dsn else ""


class DeviceWriteSerializer(serializers.Serializer):
    """What a POST or PATCH takes: shapes only; ``services.devices`` checks the rules."""

    name = serializers.CharField(max_length=120)
    kind = serializers.ChoiceField(choices=ResourceKind.choices)
    base_url = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                     help_text="HTTP devices: scheme, host, port and optional base path.")
    dsn = serializers.CharField(required=False, allow_blank=True, max_length=500,
                                help_text="SQL devices: postgresql://user:password@host/db or sqlite:///name.sqlite3. "
                                          "Sent back masked, the stored password is kept.")
    credentials = serializers.JSONField(write_only=True, required=False, help_text=SECRET_HELP)
    headers = serializers.JSONField(write_only=True, required=False, help_text=SECRET_HELP)
    organization = serializers.CharField(
        required=False, help_text="Slug of the organization to create (or move) the device in; may be left out "
                                  "by a member of one organization.")


class DeviceFilterSet(django_filters.FilterSet):
    organization = django_filters.CharFilter(field_name="organization__slug", help_text="The organization's slug.")
    kind = django_filters.ChoiceFilter(choices=ResourceKind.choices)

    class Meta:
        model = Device
        fields = ["organization", "kind"]


EXAMPLE_HTTP = {"name": "Main printer", "kind": "http", "base_url": "https://printer.example.com/api/",
                "credentials": {"token": "…"}, "organization": "acme"}
EXAMPLE_SQL = {"name": "ERP", "kind": "sql", "dsn": "postgresql://erp:secret@db.example.com/erp"}


@extend_schema_view(
    list=extend_schema(summary="Your organizations' devices"),
    retrieve=extend_schema(summary="A device (credentials never shown, DSN password masked)"),
    create=extend_schema(
        summary="Create a device", request=DeviceWriteSerializer, responses={201: DeviceSerializer, **error_responses(403)},
        examples=[OpenApiExample("http", value=EXAMPLE_HTTP, request_only=True),
                  OpenApiExample("sql", value=EXAMPLE_SQL, request_only=True)],
    ),
    partial_update=extend_schema(
        summary="Change a device; credentials and headers left out are kept",
        request=DeviceWriteSerializer, responses={200: DeviceSerializer, **error_responses(409)},
    ),
    destroy=extend_schema(summary="Delete a device; 409 naming the instances bound to it",
                          responses={204: None, **error_responses(409)}),
)
class DeviceViewSet(viewsets.ModelViewSet):
    serializer_class = DeviceSerializer
    filterset_class = DeviceFilterSet
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return Device.objects.visible_to(self.request.user).for_listing().order_by("organization__slug", "name", "pk")

    def get_object(self):
        return access.get_device_for(self.request.user, self.kwargs["pk"], write=self.request.method != "GET")

    def create(self, request, *args, **kwargs):
        data = self._valid(partial=False)
        organization = access.get_organization_for(request.user, data.pop("organization", None))
        device = devices.create_device(organization=organization, user=request.user, **data)
        return Response(DeviceSerializer(device).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        device = self.get_object()
        data = self._valid(partial=True)
        if "organization" in data:
            data["organization"] = access.get_organization_for(request.user, data["organization"])
        device = devices.update_device(device=device, user=request.user, **data)
        return Response(DeviceSerializer(device).data)

    def destroy(self, request, *args, **kwargs):
        devices.delete_device(device=self.get_object(), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _valid(self, *, partial: bool) -> dict:
        serializer = DeviceWriteSerializer(data=self.request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)
