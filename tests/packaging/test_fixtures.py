"""The fixture set: every bad package fails with exactly its documented code and location;
the good packages are valid. A fixture about a platform cap may lower that cap in its
``.settings.json`` (setting → value), so it stays small."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from marketplace.packaging.packages import validate_path

FIXTURES = Path(__file__).parent / "fixtures"
BAD = sorted(p for p in (FIXTURES / "bad").iterdir() if p.is_dir())


@pytest.mark.parametrize("folder", BAD, ids=[p.name for p in BAD])
def test_bad_package_fails_with_its_code_and_location(folder, settings):
    expected = json.loads((folder / ".expected.json").read_text())
    overrides = folder / ".settings.json"
    for name, value in (json.loads(overrides.read_text()) if overrides.exists() else {}).items():
        setattr(settings, name, value)

    report = validate_path(folder)

    assert not report.valid
    found = [{"code": e.code, "file": e.file, "line": e.line, "path": e.path} for e in report.errors]
    assert found == [expected], report.as_text()


def test_the_good_package_is_valid_without_warnings():
    report = validate_path(FIXTURES / "good" / "printer-sync")

    assert report.as_dict() == {"valid": True, "errors": [], "warnings": []}, report.as_text()
