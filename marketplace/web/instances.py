"""My instances and the instance page: what a customer's organization installed, how it
runs, and the buttons that change it. Only members of the instance's organization reach
these pages (anyone else, the integration's publisher and staff included, gets a 404: they
have the console). Every write is a service call (``services.installs``, ``services.calls``)
or a runtime entry point the console uses too, imported inside the view that needs it; a
refusal comes back as a message on the page it came from."""
from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncHour
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from ..accounts.errors import as_http_errors
from ..choices import RunStatus, Trigger
from ..exceptions import DomainError, NotFound
from ..hooks import runtime_hooks
from ..models import HandlerRun, Instance, IntegrationVersion, Organization
from ..services import calls, installs
from . import charts

RUNS_PER_PAGE = 20
CONTAINER_ROWS = 50


def _mine(user):
    """The instances of the organizations ``user`` is a member of: "my" instances, for
    staff too (``joined_by``, not ``visible_to``, which would give them everyone's)."""
    return Instance.objects.changeable_by(user).for_organizations(Organization.objects.joined_by(user))


def _instance(request, pk: int) -> Instance:
    instance = _mine(request.user).for_listing().with_status().filter(pk=pk).first()
    if instance is None:
        raise NotFound(f"no instance {pk} among your organizations'")
    return instance


def _refused(request, exc: DomainError) -> None:
    messages.error(request, exc.message[:1].upper() + exc.message[1:].rstrip(".") + ".")


def _back(instance: Instance, anchor: str = ""):
    return redirect(reverse("marketplace:instance-detail", args=[instance.pk]) + anchor)


def _handlers(instance: Instance, kind: str) -> dict[str, dict]:
    return {name: spec for name, spec in sorted(instance.version.handlers.items())
            if isinstance(spec, dict) and spec.get("type") == kind}


# --- My instances -----------------------------------------------------------------------------

@never_cache
@login_required
def instance_list(request):
    instances = _mine(request.user).for_listing().with_status().order_by("organization__name", "name")
    return render(request, "marketplace/instances/list.html", {"instances": instances})


# --- The instance page ------------------------------------------------------------------------

class RunFilter(forms.Form):
    handler = forms.ChoiceField(required=False, label="Handler")
    status = forms.ChoiceField(required=False, label="Status", choices=[("", "Any status"), *RunStatus.choices])

    def __init__(self, *args, handlers: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["handler"].choices = [("", "Any handler"), *((name, name) for name in handlers)]


class RunPage:
    """One page of runs, newest first, and whether older ones follow: one query (a page's
    worth plus one row), never a COUNT over a busy instance's whole history, which took
    most of the page's time at 100,000 runs (bench/bench_instance_page.py)."""

    def __init__(self, runs, number: object):
        self.number = int(number) if str(number or "").isdigit() and int(str(number)) > 0 else 1
        start = (self.number - 1) * RUNS_PER_PAGE
        rows = list(runs[start:start + RUNS_PER_PAGE + 1])
        self.object_list = rows[:RUNS_PER_PAGE]
        self.has_next = len(rows) > RUNS_PER_PAGE
        self.has_previous = self.number > 1
        self.has_other_pages = self.has_next or self.has_previous
        self.next_page_number = self.number + 1
        self.previous_page_number = self.number - 1


def _chart(instance: Instance, now) -> charts.Chart:
    since = charts.window_start(now)
    rows = (
        instance.runs.filter(created_at__gte=since).annotate(hour=TruncHour("created_at")).order_by()
        .values("hour", "status").annotate(n=Count("pk"), duration_sum=Sum("duration_ms"),
                                           timed=Count("pk", filter=Q(duration_ms__isnull=False)))
    )
    return charts.build_chart(charts.hour_buckets(rows, now))


def _webhooks(request, instance: Instance) -> list[tuple[str, str]]:
    events = sorted({spec["event"] for spec in _handlers(instance, "event").values() if spec.get("event")})
    return [(event, request.build_absolute_uri(reverse("runtime:webhook", args=[instance.webhook_token, event])))
            for event in events]


@never_cache
@login_required
@as_http_errors
def instance_detail(request, pk: int):
    """Queries: the instance, its bindings, timers, runs (count and page), chart, container
    data, and the RPC result asked for; whatever the number of runs (pinned in the tests)."""
    instance = _instance(request, pk)
    handlers = sorted(instance.version.handlers)
    run_filter = RunFilter(request.GET or None, handlers=handlers)
    runs = instance.runs.order_by("-created_at", "-pk")
    if run_filter.is_valid():
        if run_filter.cleaned_data["handler"]:
            runs = runs.filter(handler=run_filter.cleaned_data["handler"])
        if run_filter.cleaned_data["status"]:
            runs = runs.filter(status=run_filter.cleaned_data["status"])
    page = RunPage(runs, request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("rpc", None)
    rpc_run = None
    if str(request.GET.get("rpc", "")).isdigit():
        rpc_run = instance.runs.filter(pk=int(request.GET["rpc"]), trigger=Trigger.RPC).first()
    return render(request, "marketplace/instances/detail.html", {
        "instance": instance,
        "config": json.dumps(instance.masked_config(), indent=2, sort_keys=True),
        "bindings": instance.bindings.select_related("device").order_by("alias"),
        "timers": instance.timer_schedules.order_by("handler"),
        "rpc_handlers": _handlers(instance, "rpc"),
        "rpc_run": rpc_run,
        "webhooks": _webhooks(request, instance),
        "run_filter": run_filter,
        "page": page,
        "filter_query": query.urlencode(),
        "chart": _chart(instance, timezone.now()),
        "entries": instance.container_entries.order_by("container", "key")[:CONTAINER_ROWS],
        "upgrade_available": (instance.newest_available or 0) > instance.version.number,
    })


# --- Changing an instance ---------------------------------------------------------------------

@login_required
@require_POST
@as_http_errors
def set_enabled(request, pk: int):
    instance = _instance(request, pk)
    enabled = request.POST.get("enabled") == "1"
    try:
        installs.set_instance_enabled(instance=instance, enabled=enabled, user=request.user)
    except DomainError as exc:
        _refused(request, exc)
    else:
        messages.success(request, f"{instance.name} is {'enabled' if enabled else 'disabled'}.")
    return redirect(request.POST.get("next") if request.POST.get("next") == reverse("marketplace:instance-list")
                    else reverse("marketplace:instance-detail", args=[pk]))


@never_cache
@login_required
@as_http_errors
def upgrade(request, pk: int):
    """GET lists the newer available versions with their notes; POST moves to the chosen one."""
    instance = _instance(request, pk)
    newer = list(IntegrationVersion.objects.available().filter(
        integration=instance.version.integration, number__gt=instance.version.number).order_by("-number"))
    if request.method == "POST":
        chosen = next((v for v in newer if str(v.number) == request.POST.get("version")), None)
        if chosen is None:
            messages.error(request, "Choose one of the newer versions.")
            return redirect("marketplace:instance-upgrade", pk)
        try:
            instance = installs.upgrade_instance(instance=instance, version=chosen, user=request.user)
        except DomainError as exc:
            _refused(request, exc)
        else:
            messages.success(request, f"{instance.name} now runs version {chosen.number}.")
        return _back(instance)
    return render(request, "marketplace/instances/upgrade.html", {"instance": instance, "versions": newer})


@login_required
@as_http_errors
def uninstall(request, pk: int):
    """GET asks for confirmation; POST uninstalls."""
    instance = _instance(request, pk)
    if request.method == "POST":
        try:
            installs.uninstall_instance(instance=instance, user=request.user)
        except DomainError as exc:
            _refused(request, exc)
            return _back(instance)
        messages.success(request, f"{instance.name} is uninstalled.")
        return redirect("marketplace:instance-list")
    return render(request, "marketplace/accounts/confirm.html", {
        "title": f"Uninstall {instance.name}?",
        "explanation": f"Its handlers stop, and its config, bindings, timers, runs and stored data are deleted. "
                       f"You can install {instance.version.integration.name} again later, from scratch.",
        "action": "Uninstall",
        "cancel_url": reverse("marketplace:instance-detail", args=[pk]),
    })


# --- Running it -------------------------------------------------------------------------------

def _timer(instance: Instance, timer_pk: int):
    timer = instance.timer_schedules.filter(pk=timer_pk).first()
    if timer is None:
        raise NotFound(f"no timer {timer_pk} on {instance.name}")
    timer.instance = instance  # already loaded with its organization and version
    return timer


@login_required
@require_POST
@as_http_errors
def timer_pause(request, pk: int, timer_pk: int):
    instance = _instance(request, pk)
    timer = _timer(instance, timer_pk)
    paused = request.POST.get("paused") == "1"
    try:
        runtime_hooks().update_timer(schedule=timer, paused=paused, user=request.user)
    except DomainError as exc:
        _refused(request, exc)
    else:
        messages.success(request, f"Timer {timer.handler} is {'paused' if paused else 'running again'}.")
    return _back(instance, "#timers")


@login_required
@require_POST
@as_http_errors
def timer_run_now(request, pk: int, timer_pk: int):
    instance = _instance(request, pk)
    timer = _timer(instance, timer_pk)
    try:
        run = runtime_hooks().run_timer_now(schedule=timer, user=request.user)
    except DomainError as exc:
        _refused(request, exc)
    else:
        messages.success(request, f"Run #{run.pk} of {timer.handler} is queued.")
    return _back(instance, "#runs")


@login_required
@require_POST
@as_http_errors
def replay(request, pk: int, run_pk: int):
    instance = _instance(request, pk)
    run = instance.runs.filter(pk=run_pk).first()
    if run is None:
        raise NotFound(f"no run {run_pk} of {instance.name}")
    try:
        again = runtime_hooks().replay_run(run=run, user=request.user)
    except DomainError as exc:
        _refused(request, exc)
    else:
        messages.success(request, f"Run #{run.pk} is replayed as run #{again.pk}.")
    return _back(instance, "#runs")


@login_required
@require_POST
@as_http_errors
def call_rpc(request, pk: int, handler: str):
    """Runs the handler now (in the runtime's isolated child process) and shows its run."""
    instance = _instance(request, pk)
    text = request.POST.get("input", "").strip()
    try:
        payload = json.loads(text) if text else {}
    except ValueError as exc:
        messages.error(request, f"The input of {handler} is not JSON: {exc}.")
        return _back(instance, f"#rpc-{handler}")
    try:
        run: HandlerRun = calls.call_rpc(instance=instance, handler=handler, input=payload, user=request.user)
    except NotFound:
        raise
    except DomainError as exc:
        _refused(request, exc)
        return _back(instance, f"#rpc-{handler}")
    url = reverse("marketplace:instance-detail", args=[pk])
    return redirect(f"{url}?rpc={run.pk}#rpc-{handler}")
