"""Hostile packages are refused with a clear error, before anything is written."""
from __future__ import annotations

import io
import json
import os
import zipfile

import pytest

from marketplace.exceptions import InvalidInput
from marketplace.models import ApiSchema, Integration, IntegrationVersion
from marketplace.packaging.packages import PackageRefused, read_package
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
