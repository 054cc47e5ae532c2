"""OpenAPI 3.x / Swagger 2.0 documents: parsing, validation and indexing, as pure functions.

``load_document`` parses JSON or YAML (safely: no tags, no alias expansion bombs, no
external ``$ref``), ``check_document`` runs openapi-spec-validator, ``index_document``
extracts endpoints (method, path, operationId, summary, parameters), models and their fields,
and ``EndpointMatcher`` tells whether a literal request matches an endpoint, honouring path
templates (``/orders/{id}``) and the document's base path.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import yaml

# openapi-spec-validator switches to jsonschema-rs whenever that is installed (schemathesis,
# a test tool, brings it), and its messages differ: keep the one backend production has.
os.environ.setdefault("OPENAPI_SPEC_VALIDATOR_SCHEMA_VALIDATOR_BACKEND", "jsonschema")

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_NODES = 200_000     # values in a parsed document; YAML aliases count every time they are used
MAX_DEPTH = 64


class OpenApiError(ValueError):
    """The document cannot be used; the message says why (the validator's own when it has one)."""


class _SafeLoader(yaml.SafeLoader):
    """Plain data only: YAML tags that build Python objects are refused by SafeLoader."""


def _count_nodes(document) -> None:
    """Refuse documents whose expanded size (aliases counted per use) or depth is extreme,
    before anything serializes them."""
    stack = [(document, 0)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise OpenApiError(f"the document is too large: more than {MAX_NODES:,} values")
        if depth > MAX_DEPTH:
            raise OpenApiError(f"the document nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _external_refs(document) -> list[str]:
    found, stack = [], [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            ref = value.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                found.append(ref)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def load_document(source: str, name: str = "") -> dict:
    """Parse ``source`` (JSON, or YAML for anything that is not JSON). Raises OpenApiError."""
    text = source.lstrip("\ufeff")
    try:
        if name.lower().endswith(".json") or text.lstrip().startswith("{"):
            document = json.loads(text)
        else:
            document = yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except (ValueError, yaml.YAMLError) as exc:
        raise OpenApiError(f"not valid JSON or YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise OpenApiError(f"the document nests deeper than {MAX_DEPTH} levels") from None
    if not isinstance(document, dict):
        raise OpenApiError("an OpenAPI document is a JSON/YAML object")
    _count_nodes(document)
    # YAML may produce non-string keys and dates; the JSON round trip is what gets stored.
    try:
        document = json.loads(json.dumps(document, default=str))
    except (TypeError, ValueError) as exc:
        raise OpenApiError(f"the document cannot be stored as JSON: {exc}") from None
    return document


def document_version(document: dict) -> str:
    if isinstance(document.get("openapi"), str):
        return document["openapi"]
    if str(document.get("swagger")) == "2.0":
        return "2.0"
    raise OpenApiError("neither an OpenAPI 3.x document ('openapi: 3.x') nor Swagger 2.0 ('swagger: \"2.0\"')")


def check_document(document: dict) -> None:
    """Validate with openapi-spec-validator. External ``$ref`` (files, URLs) are refused
    before validation: resolving them would read files or reach the network."""
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError, ValidatorDetectError

    document_version(document)
    external = _external_refs(document)
    if external:
        raise OpenApiError(f"external $ref are not supported, the document must be self-contained: {external[0]!r}")
    try:
        validate(document)
    except OpenAPIValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise OpenApiError(f"{exc.message}" + (f" (at {where})" if where else "")) from None
    except ValidatorDetectError:
        raise OpenApiError("unsupported OpenAPI version") from None
    except Exception as exc:  # the validator raises assorted errors on unresolvable refs
        raise OpenApiError(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


# --- Indexing ---------------------------------------------------------------------------------

@dataclass
class Endpoint:
    method: str
    path: str
    operation_id: str = ""
    summary: str = ""
    parameters: list[dict] = field(default_factory=list)


@dataclass
class ModelField:
    name: str
    type: str
    required: bool = False
    description: str = ""


@dataclass
class Model:
    name: str
    description: str = ""
    fields: list[ModelField] = field(default_factory=list)


@dataclass
class IndexedDocument:
    title: str
    api_version: str
    base_paths: list[str]
    endpoints: list[Endpoint]
    models: list[Model]


def _resolve(document: dict, node, *, depth: int = 0):
    """Follow a local ``$ref`` (``#/components/schemas/Pet``); anything else is returned as is."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/") and depth < 20:
        target = document
        for part in node["$ref"][2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                return node
            target = target[part]
        node, depth = target, depth + 1
    return node


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_label(document: dict, schema) -> str:
    """A short human label: ``string``, ``integer``, ``Pet``, ``array of Pet``."""
    if not isinstance(schema, dict):
        return ""
    if isinstance(schema.get("$ref"), str):
        return _ref_name(schema["$ref"])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = " | ".join(str(k) for k in kind)
    if kind == "array":
        inner = type_label(document, schema.get("items"))
        return f"array of {inner}" if inner else "array"
    for combiner in ("oneOf", "anyOf", "allOf"):
        if isinstance(schema.get(combiner), list):
            return f" {'|' if combiner != 'allOf' else '&'} ".join(
                filter(None, (type_label(document, s) for s in schema[combiner]))
            ) or combiner
    label = str(kind or ("object" if "properties" in schema else ""))
    if schema.get("format"):
        label = f"{label} ({schema['format']})" if label else str(schema["format"])
    return label


def _parameter(document: dict, raw) -> dict | None:
    param = _resolve(document, raw)
    if not isinstance(param, dict) or "name" not in param:
        return None
    schema = param.get("schema") if "schema" in param else param  # Swagger 2 keeps type on the parameter
    return {
        "name": str(param.get("name")),
        "in": str(param.get("in", "")),
        "required": bool(param.get("required", False)),
        "type": type_label(document, schema)[:100],
        "description": str(param.get("description", ""))[:500],
    }


def _model_fields(document: dict, schema: dict, *, depth: int = 0) -> tuple[list[ModelField], str]:
    schema = _resolve(document, schema)
    if not isinstance(schema, dict) or depth > 10:
        return [], ""
    fields: dict[str, ModelField] = {}
    for part in schema.get("allOf", []) or []:
        inner, _ = _model_fields(document, part, depth=depth + 1)
        for f in inner:
            fields.setdefault(f.name, f)
    required = set(schema.get("required") or [])
    for name, prop in (schema.get("properties") or {}).items():
        prop = prop if isinstance(prop, dict) else {}
        target = _resolve(document, prop)
        description = prop.get("description") or (target.get("description") if isinstance(target, dict) else "")
        fields[name] = ModelField(
            name=str(name), type=type_label(document, prop)[:100], required=name in required,
            description=str(description or "")[:1000],
        )
    for name in required:
        if name in fields:
            fields[name].required = True
    return list(fields.values()), type_label(document, schema)


def base_paths(document: dict) -> list[str]:
    """Path prefixes requests may carry before the templated paths: Swagger's ``basePath``,
    the path part of each OpenAPI server URL."""
    prefixes = set()
    if isinstance(document.get("basePath"), str):
        prefixes.add(document["basePath"])
    for server in document.get("servers") or []:
        if isinstance(server, dict) and isinstance(server.get("url"), str):
            url = re.sub(r"\{[^}]*\}", "x", server["url"])
            prefixes.add(urlsplit(url).path if "://" in url else url)
    return sorted({p.rstrip("/") for p in prefixes if p and p.rstrip("/")})


def index_document(document: dict) -> IndexedDocument:
    """Endpoints, models and fields of a (validated) document."""
    info = document.get("info") if isinstance(document.get("info"), dict) else {}
    endpoints: list[Endpoint] = []
    for path, item in (document.get("paths") or {}).items():
        item = _resolve(document, item)
        if not isinstance(item, dict):
            continue
        shared = [p for p in (_parameter(document, raw) for raw in item.get("parameters") or []) if p]
        for method in METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            own = [p for p in (_parameter(document, raw) for raw in operation.get("parameters") or []) if p]
            keys = {(p["name"], p["in"]) for p in own}
            parameters = own + [p for p in shared if (p["name"], p["in"]) not in keys]
            endpoints.append(Endpoint(
                method=method.upper(), path=str(path), operation_id=str(operation.get("operationId", ""))[:200],
                summary=str(operation.get("summary", "") or operation.get("description", ""))[:500],
                parameters=parameters,
            ))
    schemas = (document.get("components") or {}).get("schemas") if "openapi" in document else document.get("definitions")
    models = []
    for name, schema in (schemas or {}).items():
        fields, _ = _model_fields(document, schema if isinstance(schema, dict) else {})
        description = schema.get("description", "") if isinstance(schema, dict) else ""
        models.append(Model(name=str(name), description=str(description)[:2000], fields=fields))
    return IndexedDocument(
        title=str(info.get("title", ""))[:200], api_version=str(info.get("version", ""))[:50],
        base_paths=base_paths(document), endpoints=endpoints, models=models,
    )


# --- Matching ---------------------------------------------------------------------------------

def template_regex(template: str) -> re.Pattern:
    """``/orders/{id}/items`` → a regex matching ``/orders/42/items``: each ``{name}`` is one
    non-empty path segment."""
    pieces = re.split(r"(\{[^}/]+\})", template.rstrip("/") or "/")
    pattern = "".join("[^/]+" if piece.startswith("{") and piece.endswith("}") else re.escape(piece) for piece in pieces)
    return re.compile(f"^{pattern}/?$")


class EndpointMatcher:
    """Answers: does ``METHOD /path`` match an endpoint of the document?"""

    def __init__(self, endpoints: list[tuple[str, str]], prefixes: list[str] | None = None):
        self.endpoints = [(method.upper(), template_regex(path)) for method, path in endpoints]
        self.prefixes = prefixes or []

    def candidates(self, path: str) -> list[str]:
        path = path.split("?", 1)[0].split("#", 1)[0] or "/"
        if "://" in path:
            path = urlsplit(path).path or "/"
        if not path.startswith("/"):
            path = "/" + path
        options = [path]
        for prefix in self.prefixes:
            if path == prefix or path.startswith(prefix + "/"):
                options.append(path[len(prefix):] or "/")
        return options

    def matches(self, method: str | None, path: str) -> bool:
        wanted = method.upper() if method else None
        for candidate in self.candidates(path):
            for endpoint_method, regex in self.endpoints:
                if (wanted is None or endpoint_method == wanted) and regex.match(candidate):
                    return True
        return False
