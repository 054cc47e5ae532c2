"""Differences between versions: manifest paths and unified diffs per Lua file."""
from __future__ import annotations

from django.template.loader import render_to_string

from marketplace.packaging.diffs import diff_content, diff_versions
from tests import factories

from .helpers import MINI_LUA, MINI_MANIFEST


def test_manifest_changes_are_listed_by_path():
    new = {**MINI_MANIFEST, "title": "Mini 2", "permissions": ["log", "tenant.sql"],
           "handlers": {"sync": {**MINI_MANIFEST["handlers"]["sync"], "schedule": {"every": "1h"}}}}
    new.pop("name")
    new["description"] = "Now with SQL"

    diff = diff_content(MINI_MANIFEST, {}, new, {})

    assert [(c.path, c.change, c.old, c.new) for c in diff.manifest] == [
        ("description", "added", None, "Now with SQL"),
        ("handlers.sync.schedule.every", "changed", "5m", "1h"),
        ("name", "removed", "mini", None),
        ("permissions", "changed", ["log"], ["log", "tenant.sql"]),
        ("title", "changed", "Mini", "Mini 2"),
    ]


def test_each_changed_lua_file_gets_a_unified_diff():
    old = {"main.lua": MINI_LUA, "gone.lua": "return 1\n", "same.lua": "-- same\n"}
    new = {"main.lua": MINI_LUA.replace('"tick"', '"tock"'), "new.lua": "return 2\n", "same.lua": "-- same\n"}

    diff = diff_content(MINI_MANIFEST, old, MINI_MANIFEST, new)

    assert diff.manifest == []
    assert [(f.file, f.change, f.added, f.removed) for f in diff.files] == [
        ("gone.lua", "removed", 0, 1), ("main.lua", "changed", 1, 1), ("new.lua", "added", 1, 0),
    ]
    assert diff.unchanged_files == ["same.lua"]
    main = diff.files[1]
    assert main.unified.startswith("--- a/main.lua\n+++ b/main.lua\n@@ -1,4 +1,4 @@\n")
    assert '-  ctx.log.info("tick")\n+  ctx.log.info("tock")\n' in main.unified
    assert [line.kind for line in main.lines] == ["hunk", "context", "del", "add", "context", "context"]


def test_versions_and_the_draft_compare(acme):
    integration = factories.make_integration(acme)
    v1 = factories.make_published(integration, manifest=MINI_MANIFEST, files={"main.lua": MINI_LUA})
    draft = factories.make_draft(integration, manifest={**MINI_MANIFEST, "title": "Next"}, files={"main.lua": MINI_LUA})

    diff = diff_versions(v1, draft)

    assert (diff.old_label, diff.new_label) == ("v1", "draft")
    assert diff.as_dict() == {
        "old": "v1", "new": "draft",
        "manifest": [{"path": "title", "change": "changed", "old": "Mini", "new": "Next"}],
        "files": [], "unchanged_files": ["main.lua"],
    }


def test_the_admin_snippet_renders():
    diff = diff_content(MINI_MANIFEST, {"main.lua": MINI_LUA}, {**MINI_MANIFEST, "title": "<b>x</b>"},
                        {"main.lua": MINI_LUA + "-- <script>\n"}, old_label="v1", new_label="v2")

    html = render_to_string("admin/marketplace/version_diff.html", {"diff": diff})

    assert "Changes from v1 to v2" in html
    assert "<code>title</code>" in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "+-- &lt;script&gt;" in html and "<script>" not in html


def test_identical_content_has_no_diff():
    diff = diff_content(MINI_MANIFEST, {"main.lua": MINI_LUA}, dict(MINI_MANIFEST), {"main.lua": MINI_LUA})
    assert diff.is_empty
