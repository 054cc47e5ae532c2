"""Hostile packages are refused with a clear error, before anything is written."""
from __future__ import annotations

import io
import json
import os
import zipfile

import pytest

from marketplace.exceptions import InvalidInput
from marketplace.models import ApiSchema, Integration, IntegrationVersion
from marketplace.packaging import validation
from marketplace.packaging.packages import PackageRefused, read_package, validate_path
from marketplace.packaging.validation import validate_content
from marketplace.services.packages import import_package, load_package

from . import helpers


def refusal(data) -> PackageRefused:
    with pytest.raises(PackageRefused) as exc:
        read_package(data)
    return exc.value


def test_a_plain_zip_reads():
    package = read_package(helpers.make_zip())
    assert package.manifest == helpers.MINI_MANIFEST
    assert package.files == {"main.lua": helpers.MINI_LUA}


def test_a_single_wrapping_folder_is_stripped():
    data = helpers.make_zip({"mini/manifest.json": json.dumps(helpers.MINI_MANIFEST), "mini/main.lua": helpers.MINI_LUA})
    assert read_package(data).bundle == {"main.lua": helpers.MINI_LUA}


def test_finder_zips_with_macos_metadata_read():
    data = helpers.make_zip({"mini/manifest.json": json.dumps(helpers.MINI_MANIFEST), "mini/main.lua": helpers.MINI_LUA,
                             "__MACOSX/mini/._main.lua": b"\0\5\x16\7", "mini/.DS_Store": b"\0\0\0\1Bud1"})
    package = read_package(data)
    assert (package.manifest, package.files, package.ignored) == (helpers.MINI_MANIFEST, {"main.lua": helpers.MINI_LUA}, [])


@pytest.mark.parametrize("name", ["../evil.lua", "lib/../../evil.lua", "/etc/cron.d/evil.lua", "C:/evil.lua",
                                  "lib\\..\\evil.lua", "lib//evil.lua"])
def test_unsafe_paths_are_refused(name):
    entries = {"manifest.json": json.dumps(helpers.MINI_MANIFEST), "main.lua": helpers.MINI_LUA}
    info = zipfile.ZipInfo("placeholder")
    info.filename = name  # ZipInfo() normalizes separators; a hostile archive does not
    error = refusal(helpers.make_zip(entries, extra=[(info, b"-- evil")]))
    assert error.code == "package_unsafe_path"
    assert error.file == name


def test_symlinks_are_refused():
    data = helpers.make_zip(extra=[(helpers.symlink_info("lib.lua"), b"/etc/passwd")])
    error = refusal(data)
    assert (error.code, error.file) == ("package_symlink", "lib.lua")


def test_symlinks_in_folders_are_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(helpers.MINI_MANIFEST))
    (tmp_path / "main.lua").write_text(helpers.MINI_LUA)
    os.symlink("/etc/passwd", tmp_path / "secrets.lua")
    error = refusal(tmp_path)
    assert (error.code, error.file) == ("package_symlink", "secrets.lua")


def test_too_many_files_are_refused(settings):
    settings.JUNCTION_PACKAGE_MAX_FILES = 10
    entries = {f"lib/m{i}.lua": "return 1" for i in range(11)}
    assert refusal(helpers.make_zip(entries)).code == "package_too_many_files"


def test_an_oversize_file_is_refused(settings):
    settings.JUNCTION_BUNDLE_MAX_FILE_BYTES = settings.JUNCTION_APISCHEMA_MAX_BYTES = 1000
    entries = {"manifest.json": json.dumps(helpers.MINI_MANIFEST), "main.lua": "-- " + "x" * 2000}
    error = refusal(helpers.make_zip(entries))
    assert (error.code, error.file) == ("package_file_too_large", "main.lua")


def test_an_oversize_total_is_refused(settings):
    settings.JUNCTION_PACKAGE_MAX_BYTES = 5000
    entries = {f"m{i}.lua": "-- " + os.urandom(600).hex() for i in range(5)}
    error = refusal(helpers.make_zip(entries))
    assert error.code == "package_too_large"


def test_a_zip_bomb_is_refused_while_inflating():
    # 50 MB of zeros deflate to ~50 kB; the reader stops after about a megabyte.
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(helpers.MINI_MANIFEST))
        with archive.open("bomb.lua", "w") as stream:
            chunk = b"\0" * (1024 * 1024)
            for _ in range(50):
                stream.write(chunk)
    data = out.getvalue()
    assert len(data) < 200_000
    error = refusal(data)
    assert (error.code, error.file) == ("package_bomb", "bomb.lua")


def test_lying_size_headers_are_not_trusted():
    data = helpers.make_zip({"manifest.json": json.dumps(helpers.MINI_MANIFEST), "main.lua": "-- " + "y" * 5000})
    # The central directory claims 10 bytes for main.lua: the entry must not pass as read.
    data = helpers.patch_central_header(data, "main.lua", 24, (10).to_bytes(4, "little"))
    error = refusal(data)
    assert (error.code, error.file) == ("package_unreadable", "main.lua")


def test_non_utf8_lua_is_refused():
    entries = {"manifest.json": json.dumps(helpers.MINI_MANIFEST), "main.lua": "-- caf\xe9\n".encode("latin-1")}
    error = refusal(helpers.make_zip(entries))
    assert (error.code, error.file) == ("package_encoding", "main.lua")


def test_duplicate_entries_are_refused():
    entries = {"manifest.json": json.dumps(helpers.MINI_MANIFEST), "main.lua": helpers.MINI_LUA}
    error = refusal(helpers.make_zip(entries, extra=[(zipfile.ZipInfo("MAIN.lua"), b"-- shadow")]))
    assert error.code == "package_duplicate_entry"


def test_encrypted_entries_are_refused():
    data = helpers.make_zip(extra=[(zipfile.ZipInfo("secret.lua"), b"-- hidden")])
    data = helpers.patch_central_header(data, "secret.lua", 8, b"\x01\x00")
    error = refusal(data)
    assert (error.code, error.file) == ("package_encrypted", "secret.lua")


def test_not_a_zip_is_unreadable(tmp_path):
    path = tmp_path / "package.zip"
    path.write_bytes(b"this is not a zip")
    assert refusal(path).code == "package_unreadable"


def test_a_refused_package_writes_nothing(acme, publisher):
    counts = (Integration.objects.count(), IntegrationVersion.objects.count(), ApiSchema.objects.count())
    data = helpers.make_zip(extra=[(helpers.symlink_info("lib.lua"), b"/etc/passwd")])

    with pytest.raises(InvalidInput) as exc:
        package = load_package(data)
        import_package(package=package, organization=acme, user=publisher)

    assert exc.value.errors == {"lib.lua": ["package refused: lib.lua is a symbolic link; packages hold plain files only"]}
    assert (Integration.objects.count(), IntegrationVersion.objects.count(), ApiSchema.objects.count()) == counts


def test_an_oversize_upload_is_refused_before_reading(settings):
    settings.JUNCTION_PACKAGE_MAX_BYTES = 1000
    upload = io.BytesIO(helpers.make_zip({"manifest.json": json.dumps(helpers.MINI_MANIFEST), "big.lua": os.urandom(2000).hex()}))
    assert refusal(upload).code == "package_too_large"


# --- Hostile content: validation reports it, in bounded time, never with a traceback ---------

def deep_json(depth: int) -> str:
    """A manifest whose description nests ``depth`` lists deep, as text (json.dumps would
    itself run out of recursion)."""
    return json.dumps({**helpers.MINI_MANIFEST, "description": "@"}).replace('"@"', "[" * depth + "]" * depth)


def report_of(entries: dict) -> dict:
    return validate_path(helpers.make_zip(entries)).as_dict()


def codes(report: dict) -> list[str]:
    return [item["code"] for item in report["errors"] + report["warnings"]]


def test_a_manifest_nested_50000_deep_is_reported_not_raised():
    report = report_of({"manifest.json": deep_json(50_000), "main.lua": helpers.MINI_LUA})

    assert report["valid"] is False
    [error] = report["errors"]
    assert (error["code"], error["file"]) == ("manifest_too_deep", "manifest.json")
    assert "deeper than 64 levels" in error["message"] and "JUNCTION_JSON_MAX_DEPTH" in error["message"]


def test_a_manifest_within_the_nesting_cap_is_read():
    # 64 levels in all: the manifest object and description's 63 lists.
    report = report_of({"manifest.json": deep_json(63), "main.lua": helpers.MINI_LUA})
    assert "manifest_too_deep" not in codes(report)
    assert codes(report) == ["manifest_type"]  # description is a string: the schema's own complaint


@pytest.mark.parametrize("text, words", [
    ('{"name": "mini", "title": NaN}', "NaN is not a JSON number"),
    ('{"name": "mini", "title": -Infinity}', "-Infinity is not a JSON number"),
    ('{"name": "mini", "title": 1e400}', "1e400 is too large"),
    ('{"name": "mini", "name": "other"}', "the key 'name' appears twice"),
    ('{"name": "mini", "title": "\\ud800"}', "lone surrogate"),
    ('{"name": "mini", "title": "\\u0000"}', "U+0000"),
])
def test_json_that_is_not_json_is_a_manifest_json_error(text, words):
    report = report_of({"manifest.json": text, "main.lua": helpers.MINI_LUA})

    [error] = report["errors"]
    assert (error["code"], error["file"]) == ("manifest_json", "manifest.json")
    assert error["message"].startswith("manifest.json is not valid JSON: ") and words in error["message"]


def test_a_huge_manifest_is_refused_before_it_is_parsed():
    manifest = {**helpers.MINI_MANIFEST, "description": "x" * (300 * 1024)}
    report = report_of({"manifest.json": json.dumps(manifest), "main.lua": helpers.MINI_LUA})

    [error] = report["errors"]
    assert (error["code"], error["file"]) == ("manifest_too_large", "manifest.json")
    assert "at most 262,144 are allowed (JUNCTION_MANIFEST_MAX_BYTES)" in error["message"]


def test_a_stored_manifest_too_deep_for_the_checks_is_reported():
    # As the console or an older release may have stored it: no manifest.json to refuse.
    manifest = dict(helpers.MINI_MANIFEST)
    node = manifest["description"] = []
    for _ in range(300):
        node.append([])
        node = node[0]

    report = validate_content(manifest, {"main.lua": helpers.MINI_LUA})

    assert [(e.code, e.file) for e in report.errors] == [("manifest_too_deep", "manifest.json")]


def test_a_long_and_chain_is_refused_within_the_compile_budget():
    # Lua's parser is quadratic here: 40,000 `and` take several seconds to compile.
    source = helpers.MINI_LUA + "function all(a)\n  return a" + " and a" * 40_000 + "\nend\n"
    report = report_of({"manifest.json": json.dumps(helpers.MINI_MANIFEST), "main.lua": source})

    [error] = report["errors"]
    assert (error["code"], error["file"]) == ("lua_too_complex", "main.lua")
    assert "1,000 ms allowed (JUNCTION_LUA_COMPILE_MAX_MS)" in error["message"]


def test_a_bundle_that_runs_out_of_compile_time_names_the_files_left(settings):
    settings.JUNCTION_LUA_COMPILE_MAX_MS = 0
    files = {"a.lua": "return 1", "b.lua": "return 2", "main.lua": helpers.MINI_LUA}

    report = validate_content(helpers.MINI_MANIFEST, files)

    assert [(e.code, e.file) for e in report.errors] == [("lua_too_complex", "a.lua")]
    assert "(2 later file(s) not compiled)" in report.errors[0].message


def test_the_static_checker_stops_at_its_budget_with_a_warning(settings):
    # luaparser's prediction reads nested parentheses at a few kB a second; Lua compiles them at once.
    settings.JUNCTION_LUA_STATIC_MAX_MS = 100
    slow = ("x = " + "(" * 60 + "1" + ")" * 60 + "\n") * 200
    files = {"main.lua": helpers.MINI_LUA + slow, "other.lua": "return 1\n"}

    report = validate_content(helpers.MINI_MANIFEST, files)

    assert report.valid
    assert [(w.code, w.file) for w in report.warnings] == [("lua_parser_fallback", "main.lua"),
                                                           ("lua_parser_fallback", "other.lua")]
    assert "JUNCTION_LUA_STATIC_MAX_MS" in report.warnings[0].message


def test_each_file_is_compiled_once(monkeypatch):
    calls = []
    real = validation.compile_error
    monkeypatch.setattr(validation, "compile_error", lambda source, path, **kw: calls.append(path) or real(source, path, **kw))
    # luaparser cannot read 190 nested tables that Lua accepts: the handler's function is
    # then looked for without a parser, which used to compile the file a second time.
    files = {"main.lua": helpers.MINI_LUA + "x = " + "{" * 190 + "}" * 190 + "\n", "lib.lua": "return 1\n"}

    report = validate_content(helpers.MINI_MANIFEST, files)

    assert "lua_parser_fallback" in report.codes()
    assert sorted(calls) == ["lib.lua", "main.lua"]


def test_the_caps_are_checked_on_stored_versions_too(settings):
    settings.JUNCTION_MANIFEST_MAX_TIMERS = 1
    manifest = {**helpers.MINI_MANIFEST, "handlers": {
        **helpers.MINI_MANIFEST["handlers"],
        "hourly": {"type": "timer", "file": "main.lua", "function": "sync", "schedule": {"every": "1h"}},
    }}

    report = validate_content(manifest, {"main.lua": helpers.MINI_LUA})

    assert [(e.code, e.path, e.message) for e in report.errors] == [(
        "manifest_too_many_timers", "handlers", "2 timers are declared; at most 1 are allowed (JUNCTION_MANIFEST_MAX_TIMERS)"
    )]
