"""``/api/v1/instances/``: installed integrations, over the install services
(``services.installs``) and the handler calls (``services.calls``).

Members of an instance's organization (any role) see all of it and change it; the
integration's publishers see their customers' instances too, as support fields only
(``access.INSTANCE_SUPPORT_FIELDS``: config, bindings and last_error come back null), and
change none of them (404, as for anyone else). Secret config values are never read back."""
from __future__ import annotations

import django_filters
from django.db import transaction
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, parsers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError
from rest_framework.response import Response

from .. import access, jsonvalues
from ..choices import InstanceState
from ..exceptions import DomainError, InvalidInput, NotFound
from ..models import CacheEntry, ContainerEntry, Instance, IntegrationVersion
from ..services import calls, installs
from .instance_serializers import (
    EventRunsSerializer,
    InstallSerializer,
    InstanceChangeSerializer,
    InstanceSerializer,
    PingSerializer,
    RunOutcomeSerializer,
    StorageSerializer,
    UpgradeSerializer,
)
from .schema import error_responses

ANY_JSON = {"application/json": OpenApiTypes.ANY}


class StrictJSONParser(parsers.JSONParser):
    """Handler input and event payloads are parsed as the webhook parses them
    (``jsonvalues.loads``): no NaN or Infinity, no duplicate keys, bounded nesting."""

    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read() if stream is not None else b""
        if not body.strip():
            return None
        try:
            return jsonvalues.loads(body)
        except jsonvalues.JSONRefused as exc:
            raise ParseError(f"the body is not valid JSON: {exc.message}") from None


def _body(request):
    """The JSON body as handler input or event payload; an empty body is null (DRF would
    make it an empty form)."""
    length = str(request.META.get("CONTENT_LENGTH") or "0")
    if length.isdigit() and int(length) == 0:
        return None
    return request.data


def _name_the_run(exc: DomainError) -> None:
    # A failed lifecycle handler (install, upgrade) raises with its run: name it, so the
    # caller can read its logs at runs/{id}/.
    run = getattr(exc, "run", None)
    if run is not None:
        exc.detail = {"run": run.pk}


def _version(user, slug: str, number: int) -> IntegrationVersion:
    """The version a body names. A missing integration or version reads like one the caller
    may not see: a bad field, not a 404 (the URL itself was found)."""
    try:
        access.get_integration_for(user, slug)
    except NotFound:
        raise InvalidInput(f"no integration {slug!r} among those you may install", field="integration") from None
    try:
        return access.get_version_for(user, slug, number)
    except NotFound:
        raise InvalidInput(f"{slug} has no published version {number}", field="version") from None


class InstanceFilterSet(django_filters.FilterSet):
    organization = django_filters.CharFilter(field_name="organization__slug", help_text="The organization's slug.")
    integration = django_filters.CharFilter(field_name="version__integration__slug",
                                            help_text="The integration's slug.")
    state = django_filters.ChoiceFilter(choices=InstanceState.choices)
    enabled = django_filters.BooleanFilter()

    class Meta:
        model = Instance
        fields = ["organization", "integration", "state", "enabled"]


INSTALL_EXAMPLE = {
    "integration": "printer-sync", "version": 3, "name": "Plant 1 printers", "organization": "acme",
    "config": {"site": "Plant 1", "apiKey": "…"}, "bindings": {"my-printer": 12, "erp": 13},
}


@extend_schema_view(
    list=extend_schema(summary="Instances of your organizations, and your customers' instances of your integrations"),
    retrieve=extend_schema(summary="An instance (secret config values masked)"),
    create=extend_schema(
        summary="Install a version", request=InstallSerializer,
        responses={201: InstanceSerializer, **error_responses(403, 409)},
        examples=[OpenApiExample("install", value=INSTALL_EXAMPLE, request_only=True)],
    ),
    partial_update=extend_schema(
        summary="Rename, reconfigure, rebind, enable or disable", request=InstanceChangeSerializer,
        responses={200: InstanceSerializer, **error_responses(409)},
        examples=[OpenApiExample("disable", value={"enabled": False}, request_only=True),
                  OpenApiExample("reconfigure", value={"config": {"site": "Plant 2", "apiKey": "********"}},
                                 request_only=True)],
    ),
    destroy=extend_schema(summary="Uninstall (its uninstall handlers run first)",
                          responses={204: None, **error_responses(409)}),
)
class InstanceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = InstanceSerializer
    filterset_class = InstanceFilterSet

    def get_queryset(self):
        user = self.request.user
        return (
            Instance.objects.visible_to(user).for_listing().with_data_flag(user)
            # A version's bundle can be megabytes; a row needs only its manifest (configSchema).
            .defer("version__files")
            .prefetch_related("bindings")
            .order_by("organization__slug", "name", "pk")
        )

    def get_object(self):
        instance = access.get_instance_for(self.request.user, self.kwargs["pk"], write=self.request.method != "GET")
        instance.sees_data = access.sees_instance_data(self.request.user, instance)
        return instance

    def create(self, request, *args, **kwargs):
        data = self._valid(InstallSerializer)
        organization = access.get_organization_for(request.user, data.get("organization"))
        version = _version(request.user, data["integration"], data["version"])
        try:
            instance = installs.install_version(
                version=version, organization=organization, name=data.get("name", ""), config=data.get("config"),
                bindings=data.get("bindings"), user=request.user,
            )
        except DomainError as exc:
            _name_the_run(exc)
            raise
        return Response(self._render(instance), status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        instance = self.get_object()
        data = self._valid(InstanceChangeSerializer)
        # Both services only write rows (no handler runs): one transaction, all or nothing.
        with transaction.atomic():
            if {"name", "config", "bindings"} & set(data):
                instance = installs.reconfigure_instance(
                    instance=instance, name=data.get("name"), config=data.get("config"),
                    bindings=data.get("bindings"), user=request.user,
                )
            if "enabled" in data:
                instance = installs.set_instance_enabled(instance=instance, enabled=data["enabled"], user=request.user)
        return Response(self._render(instance))

    def destroy(self, request, *args, **kwargs):
        installs.uninstall_instance(instance=self.get_object(), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Move to another available version of the same integration (up or down)",
                   request=UpgradeSerializer, responses={200: InstanceSerializer, **error_responses(409)},
                   examples=[OpenApiExample("upgrade", value={"version": 4}, request_only=True)])
    @action(detail=True, methods=["post"])
    def upgrade(self, request, pk=None):
        instance = access.get_instance_for(request.user, pk, write=True)
        data = self._valid(UpgradeSerializer)
        version = _version(request.user, instance.version.integration.slug, data["version"])
        try:
            instance = installs.upgrade_instance(
                instance=instance, version=version, config=data.get("config"), bindings=data.get("bindings"),
                user=request.user,
            )
        except DomainError as exc:
            _name_the_run(exc)
            raise
        return Response(self._render(instance))

    @extend_schema(summary="Run the ping handlers now", request=None,
                   responses={200: PingSerializer, **error_responses(409)})
    @action(detail=True, methods=["post"])
    def ping(self, request, pk=None):
        instance = access.get_instance_for(request.user, pk, write=True)
        runs = calls.ping(instance=instance, user=request.user)
        return Response(PingSerializer({"runs": runs}).data)

    @extend_schema(
        summary="Call an RPC handler now", request=ANY_JSON,
        parameters=[OpenApiParameter("handler", str, OpenApiParameter.PATH, description="The RPC handler's name.")],
        responses={200: RunOutcomeSerializer, **error_responses(409)},
        examples=[OpenApiExample("input", value={"orderId": 42}, request_only=True)],
    )
    @action(detail=True, methods=["post"], url_path=r"rpc/(?P<handler>[^/]+)", parser_classes=[StrictJSONParser])
    def rpc(self, request, pk=None, handler=None):
        instance = access.get_instance_for(request.user, pk, write=True)
        run = calls.call_rpc(instance=instance, handler=handler, input=_body(request), user=request.user)
        return Response(RunOutcomeSerializer(run).data)

    @extend_schema(
        summary="Post an event: queues a run of each of its handlers", request=ANY_JSON,
        parameters=[OpenApiParameter("event", str, OpenApiParameter.PATH, description="The event's name.")],
        responses={202: EventRunsSerializer, **error_responses(409)},
        examples=[OpenApiExample("payload", value={"orderId": 42}, request_only=True)],
    )
    @action(detail=True, methods=["post"], url_path=r"events/(?P<event>[^/]+)", parser_classes=[StrictJSONParser])
    def events(self, request, pk=None, event=None):
        instance = access.get_instance_for(request.user, pk, write=True)
        runs = calls.post_event(instance=instance, event=event, payload=_body(request), user=request.user)
        return Response({"event": event, "runs": [run.pk for run in runs]}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="The instance's data containers and live cache entries",
        parameters=[OpenApiParameter("container", str, description="Only this container's entries.")],
        responses={200: StorageSerializer},
    )
    @action(detail=True, methods=["get"])
    def storage(self, request, pk=None):
        instance = access.get_instance_for(request.user, pk)
        if not access.sees_instance_data(request.user, instance):
            raise NotFound(f"no instance {pk} among those you may reach")
        entries = ContainerEntry.objects.visible_to(request.user).filter(instance=instance).order_by("container", "key")
        if request.query_params.get("container"):
            entries = entries.filter(container=request.query_params["container"])
        now = timezone.now()
        cache = (CacheEntry.objects.visible_to(request.user).filter(instance=instance)
                 .exclude(expires_at__lte=now).order_by("key"))
        return Response(StorageSerializer({"containers": entries, "cache": cache}).data)

    def _valid(self, serializer_class) -> dict:
        serializer = serializer_class(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def _render(self, instance: Instance) -> dict:
        # The services return the locked row without the preloads a read has: read it back.
        fresh = self.get_queryset().get(pk=instance.pk)
        return InstanceSerializer(fresh).data
