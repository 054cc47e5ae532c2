"""The validation report: errors and warnings, each with a stable code and a location.

A report item is ``{code, message, file, line, path}``: ``file``/``line`` locate a problem in
the code of the bundle, ``path`` a place in the manifest (``handlers.sync.schedule``); either
is ``None`` where it does not apply. Codes are part of the public contract (CI scripts match on
them) and are documented in ``docs/validation.md``; never rename one, add a new one instead.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

ERROR = "error"
WARNING = "warning"

# code → (severity, what it means). The documentation lists exactly these.
CODES: dict[str, tuple[str, str]] = {
    # The package itself
    "package_unreadable": (ERROR, "The package cannot be read: not a folder or a .zip, or a damaged archive."),
    "package_unsafe_path": (ERROR, "An entry has an absolute path, a `..` component, a backslash or a NUL byte."),
    "package_symlink": (ERROR, "An entry is a symbolic link (or another non-regular file)."),
    "package_too_many_files": (ERROR, "The package holds more entries than the platform allows."),
    "package_file_too_large": (ERROR, "One file is larger than the platform allows."),
    "package_too_large": (ERROR, "The package (compressed or uncompressed) is larger than the platform allows."),
    "package_bomb": (ERROR, "An entry expands far more than any text file would: refused as a zip bomb."),
    "package_encrypted": (ERROR, "An entry is encrypted."),
    "package_duplicate_entry": (ERROR, "Two entries have the same name (or names differing only in case)."),
    "package_encoding": (ERROR, "A text file (Lua, manifest, README, API document) is not valid UTF-8."),
    "package_file_ignored": (WARNING, "A file that is neither Lua, manifest, README nor an API document; it is ignored."),
    "manifest_missing": (ERROR, "The package has no manifest.json at its root."),
    "manifest_json": (ERROR, "manifest.json is not a JSON object (or holds NaN, Infinity, a duplicate key, a lone surrogate or NUL)."),
    "manifest_too_large": (ERROR, "The manifest is more bytes of JSON than the platform allows (JUNCTION_MANIFEST_MAX_BYTES)."),
    "manifest_too_deep": (ERROR, "The manifest nests deeper than the platform allows (JUNCTION_JSON_MAX_DEPTH)."),
    "bundle_too_many_files": (ERROR, "The bundle holds more Lua files than the platform allows (JUNCTION_BUNDLE_MAX_FILES)."),
    # The manifest against Junction's JSON Schema
    "manifest_unknown_key": (ERROR, "A key the manifest format does not define (typo or unsupported option)."),
    "manifest_type": (ERROR, "A value of the wrong JSON type."),
    "manifest_required": (ERROR, "A required key is missing."),
    "manifest_invalid": (ERROR, "A value breaks a rule of the manifest schema (pattern, range, length...)."),
    "handler_type_unknown": (ERROR, "A handler's `type` is not timer, event, rpc or lifecycle."),
    "permission_unknown": (ERROR, "A permission that Junction does not define."),
    "resource_kind_unknown": (ERROR, "A resource `kind` other than http or sql."),
    "lifecycle_on_unknown": (ERROR, "A lifecycle handler's `on` is not install, uninstall, upgrade or ping."),
    "event_name_invalid": (ERROR, "An event name (`event` or `emits`) is not dotted words such as order.created."),
    "limit_exceeded": (ERROR, "A handler limit is above the platform's maximum."),
    # JSON Schemas inside the manifest
    "schema_invalid": (ERROR, "configSchema, a dataContainerSchemas entry or an RPC schema is not valid Draft 2020-12 JSON Schema."),
    "default_invalid": (ERROR, "A `default` does not satisfy the schema it belongs to."),
    "config_schema_not_object": (ERROR, "configSchema must describe an object (`type: object`)."),
    # Handlers
    "handler_file_missing": (ERROR, "A handler names a file that is not in the bundle."),
    "handler_function_missing": (ERROR, "A handler's function is not defined at the top level of its file."),
    "handler_function_local": (ERROR, "A handler's function is declared `local`: the runtime cannot call it."),
    "handler_function_unchecked": (WARNING, "The function could not be found without the Lua parser; it was not checked."),
    "schedule_invalid": (ERROR, "A timer schedule does not parse (`every` duration or five-field cron)."),
    "schedule_timezone_unknown": (ERROR, "A timer's `timezone` is not an IANA time zone name."),
    "schedule_too_frequent": (ERROR, "A timer would run more often than the platform minimum (JUNCTION_MIN_TIMER_SECONDS)."),
    "lifecycle_duplicate": (ERROR, "Two lifecycle handlers for the same moment."),
    "handlers_empty": (WARNING, "The manifest declares no handlers: the integration does nothing."),
    "manifest_too_many_handlers": (ERROR, "More handlers than the platform allows (JUNCTION_MANIFEST_MAX_HANDLERS)."),
    "manifest_too_many_timers": (ERROR, "More timer handlers than the platform allows (JUNCTION_MANIFEST_MAX_TIMERS)."),
    # Lua code
    "lua_syntax": (ERROR, "A Lua file does not compile; the message is Lua's own."),
    "lua_too_complex": (ERROR, "Lua could not compile the bundle in the time the platform allows (JUNCTION_LUA_COMPILE_MAX_MS): very long `and`/`or` chains."),
    "lua_parser_fallback": (WARNING, "The static checker could not parse a file the compiler accepts, or ran out of its budget; static checks were skipped for it."),
    "lua_forbidden": (ERROR, "The code uses a global the sandbox does not offer (os.execute, io, debug, dofile, string.dump...)."),
    "lua_module_missing": (ERROR, "require() names a module that is not a file of the bundle (the sandbox's require loads bundle files only)."),
    "lua_dynamic_code": (WARNING, "The code calls load(): what it compiles at run time is not checked before publishing."),
    "ctx_unknown": (ERROR, "The code uses a ctx function that does not exist."),
    "permission_missing": (ERROR, "The code uses a ctx function whose permission the manifest does not declare."),
    "resource_undeclared": (ERROR, "ctx.device.http/sql names an alias that is not a declared resource."),
    "resource_kind_mismatch": (ERROR, "ctx.device.http used on an sql resource, or ctx.device.sql on an http one."),
    "resource_alias_dynamic": (WARNING, "ctx.device.http/sql with a computed alias: it cannot be checked before run time."),
    "container_undeclared": (WARNING, "ctx.integration.containers* names a container absent from dataContainerSchemas."),
    "permission_unused": (WARNING, "A declared permission that no code needs."),
    "resource_unused": (WARNING, "A declared resource that no code uses."),
    "container_unused": (WARNING, "A declared data container that no code uses."),
    # API documents
    "api_schema_missing": (ERROR, "A resource's `apiSchema` names a document that is neither in the package nor uploaded."),
    "api_schema_kind": (ERROR, "`apiSchema` on a resource that is not of kind http."),
    "openapi_invalid": (ERROR, "An OpenAPI/Swagger document of the package does not validate."),
    "http_endpoint_unknown": (WARNING, "A ctx.device.http call's literal method and path match no endpoint of the resource's API document."),
}


@dataclass(frozen=True)
class Issue:
    code: str
    message: str
    file: str | None = None
    line: int | None = None
    path: str | None = None

    @property
    def severity(self) -> str:
        return CODES[self.code][0]

    @property
    def location(self) -> str:
        """``file:line``, ``file``, the manifest ``path``, or ``""``: the key publishing uses."""
        if self.file:
            return f"{self.file}:{self.line}" if self.line else self.file
        return self.path or ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Report:
    """What validation found. ``valid`` is true when there are no errors (warnings allowed)."""

    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors

    def add(self, code: str, message: str, *, file: str | None = None, line: int | None = None,
            path: str | None = None) -> Issue:
        if code not in CODES:
            raise ValueError(f"undocumented report code {code!r}")
        issue = Issue(code=code, message=message, file=file, line=line, path=path)
        target = self.errors if CODES[code][0] == ERROR else self.warnings
        if issue not in target:
            target.append(issue)
        return issue

    def extend(self, other: Report) -> None:
        for issue in other.errors + other.warnings:
            self.add(issue.code, issue.message, file=issue.file, line=issue.line, path=issue.path)

    def codes(self) -> list[str]:
        return [i.code for i in self.errors + self.warnings]

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "errors": [i.as_dict() for i in self.errors],
            "warnings": [i.as_dict() for i in self.warnings],
        }

    def error_dict(self) -> dict[str, list[str]]:
        """Errors in the shape of ``DomainError.errors``, keyed like the draft's fields:
        ``manifest.<path>`` for a manifest place, ``<file>:<line>`` (or ``<file>``) for code,
        ``__all__`` when neither applies."""
        out: dict[str, list[str]] = {}
        for issue in self.errors:
            if issue.file:
                key = issue.location
            elif issue.path:
                key = f"manifest.{issue.path}"
            else:
                key = "__all__" if issue.code not in ("manifest_json", "manifest_missing") else "manifest"
            out.setdefault(key, []).append(issue.message)
        return out

    def as_text(self) -> str:
        lines = []
        for label, items in (("error", self.errors), ("warning", self.warnings)):
            for issue in items:
                where = issue.location or "package"
                text = issue.message if issue.message.startswith(f"{where}:") else f"{where}: {issue.message}"
                lines.append(f"{label:7} {issue.code:26} {text}")
        verdict = "valid" if self.valid else "INVALID"
        lines.append(f"{verdict}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join(lines)
