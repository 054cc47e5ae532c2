"""JSON Schema regexes run in linear time (marketplace/schemas.py), wherever schemas are used.

Issue 9: ``"^(a+)+$"`` against ``"a" * 29 + "!"`` took 13 s in Python's ``re`` (each further
``a`` doubles it). These tests use 40 of them: with a backtracking engine each would run for
hours, so a regression cannot pass unnoticed."""
from __future__ import annotations

import pytest

from marketplace import schemas
from marketplace.exceptions import InvalidInput
from marketplace.packaging.manifest import check_json_schema
from marketplace.packaging.report import Report
from marketplace.services.installs import install_version
from runtime.execution import run_spec
from runtime.limits import platform_limits
from runtime.stores import MemoryStore

from . import factories

EVIL = "^(a+)+$"
VICTIM = "a" * 40 + "!"


def errors(schema, value) -> list[str]:
    schemas.check_schema(schema)
    return [e.message for e in schemas.validator(schema).iter_errors(value)]


def test_a_catastrophic_pattern_is_checked_in_linear_time():
    assert errors({"type": "string", "pattern": EVIL}, VICTIM) == [f"{VICTIM!r} does not match {EVIL!r}"]
    assert errors({"type": "string", "pattern": EVIL}, "a" * 40) == []


def test_pattern_properties_and_additional_properties_use_the_same_engine():
    schema = {"type": "object", "patternProperties": {EVIL: {"type": "integer"}}, "additionalProperties": False}
    assert errors(schema, {"a" * 40: 1}) == []
    assert errors(schema, {"a" * 40: "x"}) == ["'x' is not of type 'integer'"]
    assert errors(schema, {VICTIM: 1}) == [f"{VICTIM!r} does not match any of the regexes: {EVIL!r}"]
    names = {"type": "object", "propertyNames": {"pattern": EVIL}}
    assert errors(names, {VICTIM: 1}) == [f"{VICTIM!r} does not match {EVIL!r}"]


def test_ordinary_patterns_keep_their_meaning():
    assert errors({"pattern": "^[a-z]+-\\d{3}$"}, "abc-123") == []
    assert errors({"pattern": "^[a-z]+-\\d{3}$"}, "abc-12") != []
    assert errors({"pattern": "b"}, "abc") == []  # unanchored, as JSON Schema says
    assert errors({"pattern": "^\\d+$"}, "١٢٣") != []  # \d is ASCII, as in ECMA-262
    plain = {"type": "object", "properties": {"a": {}}, "additionalProperties": False}
    assert errors(plain, {"a": 1, "b": 2}) == ["Additional properties are not allowed ('b' was unexpected)"]


@pytest.mark.parametrize(
    "schema, needle",
    [
        ({"pattern": "^(?!admin)"}, "(?!admin)"),
        ({"properties": {"x": {"pattern": "(a)\\1"}}}, "back-references"),
        ({"patternProperties": {"(?<=x)y": {}}}, "(?<=x)y"),
        ({"patternProperties": {"^a": {}}, "unevaluatedProperties": False}, "unevaluatedProperties"),
    ],
)
def test_schemas_the_linear_engine_cannot_run_are_refused(schema, needle):
    with pytest.raises(schemas.SchemaError) as exc:
        schemas.check_schema(schema)
    assert needle in exc.value.message


def test_a_pattern_inside_data_keywords_is_not_read_as_a_regex():
    schemas.check_schema({"const": {"pattern": "(?!x)"}, "default": {"pattern": "(a)\\1"}})


def _run(manifest: dict, source: str, handler: str = "h"):
    return run_spec(
        manifest=manifest, files={"main.lua": source}, handler=handler, input={}, config={},
        instance_info={"id": 1, "name": "t"}, store=MemoryStore(), devices={},
        limits=platform_limits().with_(timeout_ms=1000),
    )


def test_a_container_schema_pattern_cannot_hold_a_run():
    manifest = {
        "permissions": ["integration.containers"],
        "dataContainerSchemas": {"codes": {"type": "string", "pattern": EVIL}},
        "handlers": {"h": {"type": "rpc", "file": "main.lua", "function": "h"}},
    }
    outcome = _run(manifest, f'function h(ctx) ctx.integration.containersSet("codes", "k", "{VICTIM}") end')
    assert outcome.error.code == "container_invalid"
    assert "does not match" in outcome.error.message


def test_an_output_schema_pattern_cannot_hold_the_host():
    manifest = {"handlers": {"h": {"type": "rpc", "file": "main.lua", "function": "h",
                                   "outputSchema": {"type": "string", "pattern": EVIL}}}}
    outcome = _run(manifest, f'function h(ctx) return "{VICTIM}" end')
    assert outcome.error.code == "output_invalid"
    assert "does not match" in outcome.error.message
    input_refused = _run({"handlers": {"h": {"type": "rpc", "file": "main.lua", "function": "h",
                                             "inputSchema": {"pattern": "(?=x)"}}}}, "function h() end")
    assert input_refused.error.code == "input_invalid"
    assert "not supported" in input_refused.error.message


def test_config_defaults_are_checked_in_linear_time_during_validation():
    report = Report()
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL, "default": VICTIM}}}
    assert check_json_schema(schema, "configSchema", report) is True
    assert [(i.code, i.path) for i in report.errors] == [("default_invalid", "configSchema.properties.code.default")]
    refused = Report()
    assert check_json_schema({"pattern": "(?!x)"}, "configSchema", refused) is False
    assert [i.code for i in refused.errors] == ["schema_invalid"]


def test_install_config_is_checked_in_linear_time(acme, globex):
    manifest = {
        **factories.SAMPLE_MANIFEST,
        "resources": {},
        "permissions": ["log"],
        "configSchema": {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL}}},
    }
    version = factories.make_published(factories.make_integration(acme), manifest=manifest)
    with pytest.raises(InvalidInput) as exc:
        install_version(version=version, organization=globex, name="Evil", config={"code": VICTIM}, bindings={})
    assert exc.value.errors == {"config.code": [f"{VICTIM!r} does not match {EVIL!r}"]}
    instance = install_version(version=version, organization=globex, name="Fine", config={"code": "aaa"}, bindings={})
    assert instance.config["code"] == "aaa"
