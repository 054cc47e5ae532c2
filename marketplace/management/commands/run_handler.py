"""``manage.py run_handler PACKAGE HANDLER[,HANDLER…] [--input JSON] [--config JSON]
[--bind ALIAS=URL_OR_DSN …] [--json]``

Runs handlers of a package (folder or .zip) once each, in the same sandbox and with the
same limits as installed handlers, sharing one throw-away in-memory store. Each run's
sandbox is in a child process killed at its limit plus JUNCTION_RUNTIME_KILL_MARGIN_MS (as
``run_now``'s): the store and the ctx calls stay in this process. With ``--json``
prints one JSON object per run, one per line::

    {"status": "succeeded"|"failed", "result", "error": {"code", "message"} | null,
     "logs": [{"level", "message", "fields"}], "duration_ms"}

``ctx.callback.url`` mints nothing: it returns a URL of the real shape whose secret is
``dry-run-N``, and the command prints each URL it would have minted on stderr.

Runs meet the quotas of installed instances (docs/quotas.md): storage per instance and
per tenant cache, and the tenant SQL caps, fail the run with ``quota_exceeded``; a polling
timer returning more items than an instance posts per poll gets a ``warn`` log line.

Exit status: 0 when every run succeeded, 1 when a handler failed, 2 when the package (or a
command-line value) is invalid — then one object with error code ``package_invalid`` (or
``usage_error``) is printed and nothing runs. Packages are read and validated by
``marketplace.packaging`` (as ``validate_integration`` does); the handlers named must exist.
"""
from __future__ import annotations

import json
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from marketplace import jsonvalues
from runtime.callbacks import DryRunMinter
from runtime.devices import DeviceSpec
from runtime.events import polled_items
from runtime.execution import run_spec
from runtime.sandbox import RunResult
from runtime.stores import MemoryStore


class PackageInvalid(Exception):
    code = "package_invalid"


class UsageError(Exception):
    code = "usage_error"


def load_package(path: str) -> tuple[dict, dict[str, str]]:
    """(manifest, Lua bundle) of a folder or .zip, read and validated by the packaging
    module (the same checks as ``validate_integration``); raises PackageInvalid."""
    from marketplace.packaging.packages import PackageRefused, read_package
    from marketplace.packaging.validation import validate_package

    try:
        package = read_package(path)
    except PackageRefused as exc:
        raise PackageInvalid(f"{exc.code}: {exc}") from None
    if package.manifest_error is not None:
        code, message = package.manifest_error
        raise PackageInvalid(f"{code}: {message}")
    report = validate_package(package.files, package.manifest)
    if not report.valid:
        problems = [f"{issue.code}: {issue.message}" for issue in report.errors[:5]]
        more = len(report.errors) - len(problems)
        raise PackageInvalid("; ".join(problems) + (f" (and {more} more)" if more > 0 else ""))
    return package.manifest, package.bundle


def check_handlers(manifest: dict, files: dict, names: list[str]) -> None:
    handlers = manifest.get("handlers")
    if not isinstance(handlers, dict):
        raise PackageInvalid("manifest.json has no handlers")
    for name in names:
        spec = handlers.get(name)
        if not isinstance(spec, dict):
            raise PackageInvalid(f"the manifest has no handler {name!r}")
        if not isinstance(spec.get("file"), str) or not isinstance(spec.get("function"), str):
            raise PackageInvalid(f"handler {name!r} needs a file and a function")
        if spec["file"] not in files:
            raise PackageInvalid(f"handler {name!r}: file {spec['file']} is not in the package")


def _json_arg(value: str | None, what: str):
    if value is None:
        return None
    try:
        return jsonvalues.loads(value)
    except jsonvalues.JSONRefused as exc:
        raise UsageError(f"--{what} is not valid JSON: {exc.message}") from None


def _bindings(values: list[str], manifest: dict) -> dict[str, DeviceSpec]:
    resources = manifest.get("resources") if isinstance(manifest.get("resources"), dict) else {}
    devices: dict[str, DeviceSpec] = {}
    for value in values:
        alias, sep, target = value.partition("=")
        if not sep or not alias or not target:
            raise UsageError(f"--bind takes ALIAS=URL_OR_DSN, got {value!r}")
        try:
            spec = DeviceSpec.from_target(target)
        except ValueError as exc:
            raise UsageError(f"--bind {alias}: {exc}") from None
        declared = resources.get(alias)
        if not isinstance(declared, dict):
            raise UsageError(f"--bind {alias}: not a resource declared in the manifest")
        if declared.get("kind") != spec.kind:
            raise UsageError(f"--bind {alias}: the resource is {declared.get('kind')}, the target is {spec.kind}")
        devices[alias] = spec
    return devices


def _config(manifest: dict, values) -> dict:
    """Config with the schema's defaults filled in. A value that does not match configSchema
    is reported on stderr but does not stop the run: the command is for trying things."""
    from django.core.exceptions import ValidationError

    from marketplace.validators import validate_config

    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise UsageError("--config must be a JSON object")
    schema = manifest.get("configSchema") if isinstance(manifest.get("configSchema"), dict) else {"type": "object"}
    try:
        return validate_config(schema, values)
    except ValidationError as exc:
        sys.stderr.write(f"warning: --config does not match configSchema: {'; '.join(exc.messages)}\n")
    except Exception as exc:  # an unusable schema: the validator reports it, not this command
        sys.stderr.write(f"warning: configSchema could not be applied: {exc}\n")
    completed = dict(values)
    for name, spec in (schema.get("properties") or {}).items():
        if isinstance(spec, dict) and "default" in spec and name not in completed:
            completed[name] = spec["default"]
    return completed


def warn_poll_cap(spec: dict, outcome: RunResult) -> None:
    """A polling timer's run returning more items than an installed instance posts from
    one poll (JUNCTION_POLL_MAX_ITEMS) says so in a ``warn`` log line, as its run would."""
    cap = settings.JUNCTION_POLL_MAX_ITEMS
    if not (outcome.ok and spec.get("type") == "timer" and spec.get("emits")) or cap <= 0:
        return
    count = len(polled_items(outcome.result))
    if count > cap:
        outcome.logs.append({
            "level": "warn",
            "message": f"{count} items returned: an installed instance posts at most {cap} new items per poll "
                       "(JUNCTION_POLL_MAX_ITEMS); the rest wait for a later poll that returns them again",
            "fields": {"items": count, "cap": cap},
        })


def as_json(outcome: RunResult) -> dict:
    error = outcome.error
    return {
        "status": outcome.status,
        "result": outcome.result,
        "error": {"code": error.code, "message": _located(error)} if error else None,
        "logs": outcome.logs,
        "duration_ms": outcome.duration_ms,
    }


def _located(error) -> str:
    if error.file and error.line:
        return f"{error.file}:{error.line}: {error.message}"
    return error.message


class Command(BaseCommand):
    help = "Run handlers of an integration package once, in the sandbox, with throw-away storage."

    def add_arguments(self, parser):
        parser.add_argument("package", help="package folder or .zip")
        parser.add_argument("handler", help="handler name, or several joined by commas")
        parser.add_argument("--input", help="handler input as JSON (default {})")
        parser.add_argument("--config", help="instance config as JSON (default {})")
        parser.add_argument("--bind", action="append", default=[], metavar="ALIAS=URL_OR_DSN",
                            help="bind a resource alias to an http(s) URL or a sqlite:///, postgresql:// DSN")
        parser.add_argument("--json", action="store_true", help="print one JSON object per run")

    def handle(self, *args, **options):
        as_json_output = options["json"]
        names = [n.strip() for n in options["handler"].split(",") if n.strip()]
        try:
            if not names:
                raise UsageError("no handler given")
            manifest, files = load_package(options["package"])
            check_handlers(manifest, files, names)
            run_input = _json_arg(options["input"], "input")
            config = _config(manifest, _json_arg(options["config"], "config"))
            devices = _bindings(options["bind"], manifest)
        except (PackageInvalid, UsageError) as exc:
            self._emit({"status": "failed", "result": None, "error": {"code": exc.code, "message": str(exc)},
                        "logs": [], "duration_ms": 0}, as_json_output)
            sys.exit(2)

        store = MemoryStore()
        info = {"id": None, "name": "run_handler", "integration": manifest.get("name"), "version": None}
        failed = False
        for name in names:
            minter = DryRunMinter()
            outcome = run_spec(
                manifest=manifest, files=files, handler=name,
                input={} if run_input is None else run_input,
                config=config, instance_info=info, store=store, devices=devices,
                isolated=True,  # a handler stuck inside C cannot hang the command (runtime.isolation)
                callbacks=minter,
            )
            failed = failed or not outcome.ok
            warn_poll_cap(manifest["handlers"][name], outcome)
            self._emit(as_json(outcome), as_json_output, name)
            for url in minter.would_mint:  # on stderr, so that --json output stays one object a line
                self.stderr.write(f"{name}: ctx.callback.url would mint {url['url']} (posts {url['event']!r} once, "
                                  f"for {url['ttl']} s); nothing was minted")
        sys.exit(1 if failed else 0)

    def _emit(self, payload: dict, as_json_output: bool, name: str | None = None) -> None:
        if as_json_output:
            self.stdout.write(json.dumps(payload, separators=(",", ":"), ensure_ascii=False))
            return
        label = f"{name}: " if name else ""
        if payload["error"]:
            self.stdout.write(f"{label}{payload['status']} — {payload['error']['code']}: {payload['error']['message']}")
        else:
            self.stdout.write(f"{label}{payload['status']} in {payload['duration_ms']} ms")
            self.stdout.write(json.dumps(payload["result"], indent=2, ensure_ascii=False))
        for line in payload["logs"]:
            self.stdout.write(f"  [{line['level']}] {line['message']} {json.dumps(line['fields']) if line['fields'] else ''}")
