"""Every report code is documented, with its severity."""
from __future__ import annotations

from pathlib import Path

from marketplace.packaging.report import CODES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "validation.md").read_text()


def test_every_code_is_documented_with_its_severity():
    rows = {line.split("|")[1].strip().strip("`"): line.split("|")[2].strip()
            for line in DOC.splitlines() if line.startswith("| `")}
    assert {code: rows.get(code) for code in CODES} == {code: severity for code, (severity, _) in CODES.items()}
