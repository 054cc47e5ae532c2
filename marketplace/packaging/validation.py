"""Validating a version, a draft or a package: the one place that says what "valid" means.

``validate_version`` (a draft or published version, with the API documents uploaded for its
integration) and ``validate_package`` (files read from a folder or .zip) both end in
``validate_content``; publishing, the console and ``validate_integration`` all call
them, so every interface reports the same problems with the same codes.
"""
from __future__ import annotations

import time
from pathlib import PurePosixPath

from django.conf import settings

from .contract import SQL_WRITE
from .lua import OutOfTime, ParserUnavailable, analyze, compile_error, defines_function_roughly, load_parser
from .manifest import check_caps, check_json_value, check_manifest
from .openapi import EndpointMatcher, OpenApiError, base_paths, check_document, index_document, load_document
from .report import Report

API_SUFFIXES = (".json", ".yaml", ".yml")
README_NAMES = {"readme.md"}


def setting(name: str) -> int:
    return int(getattr(settings, name))


def static_budget() -> int:
    return setting("JUNCTION_LUA_STATIC_MAX_BYTES")


def max_bundle_files() -> int:
    return setting("JUNCTION_BUNDLE_MAX_FILES")


def check_bundle_caps(files: dict, report: Report) -> bool:
    if len(files) > max_bundle_files():
        report.add("bundle_too_many_files", f"the bundle holds {len(files):,} Lua files; at most {max_bundle_files():,} "
                   "are allowed (JUNCTION_BUNDLE_MAX_FILES)", path=None)
        return False
    return True


def cap_report(manifest, files) -> Report:
    """Only the platform's caps (manifest size and nesting, handlers, timers, bundle files):
    what the install service checks again, since a version published before a cap was
    lowered may exceed it. The messages are validation's own."""
    report = Report()
    if isinstance(manifest, dict) and check_json_value(manifest, report):
        check_caps(manifest, report)
    check_bundle_caps(files if isinstance(files, dict) else {}, report)
    return report


def is_lua(path: str) -> bool:
    return path.lower().endswith(".lua")


def is_api_document(path: str) -> bool:
    return path.lower().endswith(API_SUFFIXES) and path != "manifest.json"


def validate_version(version) -> Report:
    """Validate a draft or published version against the API documents uploaded for its
    integration."""
    from ..models import ApiSchema

    matchers = {}
    for schema in ApiSchema.objects.filter(integration_id=version.integration_id).prefetch_related("endpoints"):
        matchers[schema.name] = EndpointMatcher(
            [(e.method, e.path) for e in schema.endpoints.all()], base_paths(schema.document or {})
        )
    files = version.files if isinstance(version.files, dict) else {}
    report = Report()
    if not isinstance(version.files, dict):
        report.add("manifest_type", "the bundle must map file paths to Lua source", path=None)
    return validate_content(version.manifest, files, api_documents=matchers, report=report)


def validate_package(files: dict, manifest, *, integration=None) -> Report:
    """Validate a package: ``files`` maps package paths to text (Lua files, API documents,
    README.md; manifest.json may be included and is ignored in favour of ``manifest``).
    API documents of the package are validated and indexed here; with ``integration``, the
    documents uploaded for it are used too (the package's win on equal names)."""
    report = Report()
    matchers: dict[str, EndpointMatcher | None] = {}
    if integration is not None:
        from ..models import ApiSchema

        for schema in ApiSchema.objects.filter(integration=integration).prefetch_related("endpoints"):
            matchers[schema.name] = EndpointMatcher(
                [(e.method, e.path) for e in schema.endpoints.all()], base_paths(schema.document or {})
            )
    bundle: dict[str, str] = {}
    for path, text in sorted(files.items()):
        name = PurePosixPath(path).name.lower()
        if path == "manifest.json" or name in README_NAMES and "/" not in path:
            continue
        if is_lua(path):
            bundle[path] = text
        elif is_api_document(path):
            try:
                document = load_document(text, path)
                check_document(document)
            except OpenApiError as exc:
                report.add("openapi_invalid", f"{path}: {exc}", file=path)
                matchers[path] = None
                continue
            indexed = index_document(document)
            matchers[path] = EndpointMatcher([(e.method, e.path) for e in indexed.endpoints], indexed.base_paths)
        else:
            report.add("package_file_ignored", f"{path} is not Lua, manifest.json, README.md or an API document; ignored",
                       file=path)
    return validate_content(manifest, bundle, api_documents=matchers, report=report)


def validate_content(manifest, files: dict[str, str], *, api_documents: dict | None = None,
                     report: Report | None = None) -> Report:
    """The checks themselves, on a manifest and a bundle (path → Lua source).
    ``api_documents`` maps a document name to its EndpointMatcher (None: present but broken)."""
    report = report if report is not None else Report()
    api_documents = api_documents or {}
    if not check_manifest(manifest, report):
        return report  # not an object, too deep or too large: nothing else can be read from it
    if not check_bundle_caps(files, report):
        return report  # compiling and reading hundreds of files is what the cap prevents
    analyses, compiled, complete = _read_code(files, report)
    resources = manifest.get("resources") if isinstance(manifest.get("resources"), dict) else {}
    resources = {alias: spec for alias, spec in resources.items() if isinstance(spec, dict)}
    _check_handlers(manifest, files, compiled, analyses, report)
    _check_dynamic_code(files, analyses, report)
    _check_api_links(resources, api_documents, report)
    if analyses:
        _check_code(manifest, resources, analyses, api_documents, report, complete=complete)
    return report


def _read_code(files: dict[str, str], report: Report) -> tuple[dict, dict[str, bool], bool]:
    """Compile every Lua file once, then analyze the ones that compile, each within its
    budget: JUNCTION_LUA_COMPILE_MAX_MS for compiling the whole bundle (Lua's parser is
    quadratic on long and/or chains), JUNCTION_LUA_STATIC_MAX_BYTES and _MS for the static
    checker (pure Python, a few to 60 kB/s). Returns (analyses, path → compiled?, complete:
    every file analyzed, so "unused" warnings can be trusted)."""
    analyses: dict = {}
    compiled: dict[str, bool] = {}
    complete = True
    compile_deadline = time.monotonic() + setting("JUNCTION_LUA_COMPILE_MAX_MS") / 1000
    sources = sorted(files.items())  # the bundle is Lua, whatever the file names
    for index, (path, source) in enumerate(sources):
        if not isinstance(source, str):
            report.add("package_encoding", f"{path} is not text", file=path)
            compiled[path], complete = False, False
            continue
        try:
            failure = compile_error(source, path, deadline=compile_deadline)
        except OutOfTime:
            rest = len(sources) - index - 1
            report.add("lua_too_complex", f"{path}: Lua could not compile the bundle within the "
                       f"{setting('JUNCTION_LUA_COMPILE_MAX_MS'):,} ms allowed (JUNCTION_LUA_COMPILE_MAX_MS); "
                       "shorten very long expressions such as chains of `and`/`or`"
                       + (f" ({rest} later file(s) not compiled)" if rest else ""), file=path)
            return {}, compiled, False
        compiled[path] = failure is None
        if failure is not None:
            line, message = failure
            report.add("lua_syntax", f"{path}:{line}: {message}" if line else message, file=path, line=line)
            complete = False

    if any(compiled.values()):
        load_parser()  # its first import takes about half a second: not to be charged to the code
    budget, analyzed_bytes = static_budget(), 0
    static_ms = setting("JUNCTION_LUA_STATIC_MAX_MS")
    static_deadline = time.monotonic() + static_ms / 1000
    spent = False  # the time budget ran out: no later file is analyzed
    for path, source in sources:
        if not compiled.get(path):
            continue
        size = len(source.encode())
        if spent:
            why = f"the static checker's {static_ms:,} ms (JUNCTION_LUA_STATIC_MAX_MS) ran out"
        elif analyzed_bytes + size > budget:
            why = f"the bundle has more Lua than the {budget:,} bytes the static checker reads (JUNCTION_LUA_STATIC_MAX_BYTES)"
        else:
            analyzed_bytes += size
            try:
                analyses[path] = analyze(source, path, deadline=static_deadline)
                continue
            except OutOfTime:
                spent = True
                why = f"the static checker's {static_ms:,} ms (JUNCTION_LUA_STATIC_MAX_MS) ran out"
            except ParserUnavailable as exc:
                why = f"the Lua parser failed ({exc})"
        report.add("lua_parser_fallback", f"static checks skipped for {path}: {why}", file=path)
        complete = False
    return analyses, compiled, complete


def _check_handlers(manifest: dict, files: dict, compiled: dict[str, bool], analyses: dict, report: Report) -> None:
    handlers = manifest.get("handlers")
    if not isinstance(handlers, dict):
        return
    for name, spec in handlers.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("file"), str):
            continue
        base = f"handlers.{name}"
        file = spec["file"]
        if file not in files:
            report.add("handler_file_missing", f"handler {name!r} names file {file!r}, which is not in the bundle", path=f"{base}.file")
            continue
        function = spec.get("function")
        if not isinstance(function, str) or not function:
            continue
        analysis = analyses.get(file)
        if analysis is None:
            source = files[file]
            if compiled.get(file) and not defines_function_roughly(source, function):
                report.add("handler_function_unchecked", f"could not confirm that {file} defines {function}()",
                           file=file, path=f"{base}.function")
            continue
        if function in analysis.top_level_functions:
            continue
        if function in analysis.local_functions:
            report.add("handler_function_local",
                       f"{function}() is local in {file}; write `function {function}(ctx, input)` so the runtime can call it",
                       file=file, line=analysis.local_functions[function], path=f"{base}.function")
        elif function in analysis.nested_functions:
            report.add("handler_function_missing",
                       f"{function}() is defined inside a block of {file}, not at its top level",
                       file=file, line=analysis.nested_functions[function], path=f"{base}.function")
        else:
            report.add("handler_function_missing", f"{file} defines no top-level function {function}()",
                       file=file, path=f"{base}.function")


def _check_dynamic_code(files: dict, analyses: dict, report: Report) -> None:
    """The sandbox's require loads bundle files only (``a.b`` → ``a/b.lua``), and what its
    load compiles at run time no check sees before."""
    for path, analysis in sorted(analyses.items()):
        for name, line in analysis.requires:
            if name is not None and name.replace(".", "/") + ".lua" not in files:
                report.add("lua_module_missing", f"require({name!r}) names no file of the bundle "
                           f"({name.replace('.', '/')}.lua): the sandbox's require loads bundle files only",
                           file=path, line=line)
        for line in analysis.loads:
            report.add("lua_dynamic_code", "load() compiles code at run time: it runs in the sandbox, but is not "
                       "checked before publishing", file=path, line=line)


def _check_api_links(resources: dict, api_documents: dict, report: Report) -> None:
    for alias, spec in resources.items():
        name = spec.get("apiSchema")
        if not isinstance(name, str):
            continue
        if spec.get("kind") != "http":
            report.add("api_schema_kind", f"resource {alias!r} is not of kind http; only http resources have an API document",
                       path=f"resources.{alias}.apiSchema")
        elif name not in api_documents:
            report.add("api_schema_missing",
                       f"resource {alias!r} names the API document {name!r}, which is neither in the package nor uploaded",
                       path=f"resources.{alias}.apiSchema")


def _check_code(manifest: dict, resources: dict, analyses: dict, api_documents: dict, report: Report, *,
                complete: bool) -> None:
    permissions = manifest.get("permissions") if isinstance(manifest.get("permissions"), list) else []
    declared = {p for p in permissions if isinstance(p, str)}
    containers = manifest.get("dataContainerSchemas") if isinstance(manifest.get("dataContainerSchemas"), dict) else {}
    used_permissions: set[str] = set()
    used_resources: set[str] = set()
    used_containers: set[str] = set()
    dynamic_kinds: set[str] = set()
    dynamic_containers = False

    for path, analysis in sorted(analyses.items()):
        for name, line in analysis.forbidden:
            report.add("lua_forbidden", f"{name} is not available in the sandbox", file=path, line=line)
        for use in analysis.ctx_uses:
            label = f"ctx.{use.path}"
            if not use.known:
                report.add("ctx_unknown", f"{label} is not part of the ctx API", file=path, line=use.line)
                continue
            if not use.permissions:
                continue
            granted = declared.intersection(use.permissions)
            if granted:
                used_permissions.update(granted)
            else:
                needed = " or ".join(repr(p) for p in use.permissions)
                report.add("permission_missing", f"{label} needs the permission {needed}; add it to permissions",
                           file=path, line=use.line)
            if use.writes:
                if SQL_WRITE in declared:
                    used_permissions.add(SQL_WRITE)
                else:
                    report.add("permission_missing", f"{label} runs a statement that writes: it needs the permission "
                               f"{SQL_WRITE!r} as well; add it to permissions", file=path, line=use.line)
            elif use.may_write and SQL_WRITE in declared:
                used_permissions.add(SQL_WRITE)  # a computed query may write: the permission is not unused
            if use.path.split(".")[0] == "device" and (not use.called or use.path.count(".") != 1):
                report.add("resource_alias_dynamic", f"{label} is used without a direct call; its resource aliases "
                           "cannot be checked before run time", file=path, line=use.line)
        for call in analysis.device_calls:
            label = f"ctx.device.{call.kind}"
            if call.alias is None:
                dynamic_kinds.add(call.kind)
                report.add("resource_alias_dynamic", f"{label} is called with a computed alias; it cannot be checked "
                           "before run time", file=path, line=call.line)
                continue
            spec = resources.get(call.alias)
            if spec is None:
                report.add("resource_undeclared", f"{label}({call.alias!r}): {call.alias!r} is not a declared resource",
                           file=path, line=call.line)
                continue
            used_resources.add(call.alias)
            if spec.get("kind") != call.kind:
                report.add("resource_kind_mismatch", f"{label}({call.alias!r}): the resource is of kind "
                           f"{spec.get('kind')!r}, not {call.kind!r}", file=path, line=call.line)
                continue
            document = spec.get("apiSchema")
            matcher = api_documents.get(document) if isinstance(document, str) else None
            if call.kind == "http" and matcher is not None and call.path is not None:
                if not matcher.matches(call.method, call.path):
                    request = f"{call.method.upper() + ' ' if call.method else ''}{call.path}"
                    report.add("http_endpoint_unknown", f"{request} matches no endpoint of {document} "
                               f"(resource {call.alias!r})", file=path, line=call.line)
        dynamic_kinds.update(analysis.dynamic_device)
        for use in analysis.containers:
            if use.name is None:
                dynamic_containers = True
            elif use.name not in containers:
                report.add("container_undeclared", f"container {use.name!r} is not declared in dataContainerSchemas",
                           file=path, line=use.line)
            else:
                used_containers.add(use.name)

    if not complete:
        return  # some code could not be read: "unused" would be guesses
    for index, permission in enumerate(permissions):
        if isinstance(permission, str) and permission not in used_permissions and _is_known_permission(permission):
            report.add("permission_unused", f"no code needs the permission {permission!r}", path=f"permissions.{index}")
    for alias, spec in resources.items():
        if alias not in used_resources and spec.get("kind") not in dynamic_kinds:
            report.add("resource_unused", f"no code uses the resource {alias!r}", path=f"resources.{alias}")
    if not dynamic_containers:
        for name in containers:
            if name not in used_containers:
                report.add("container_unused", f"no code uses the data container {name!r}", path=f"dataContainerSchemas.{name}")


def _is_known_permission(permission: str) -> bool:
    from .manifest import manifest_schema

    return permission in manifest_schema()["properties"]["permissions"]["items"]["enum"]
