"""What changed between two versions (or a version and the draft): manifest paths added,
removed or changed, and a unified diff per Lua file. Pure functions over manifests and
bundles; ``templates/admin/marketplace/version_diff.html`` renders the result."""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field

ADDED, REMOVED, CHANGED = "added", "removed", "changed"
CHANGES = (ADDED, REMOVED, CHANGED)


@dataclass
class ManifestChange:
    path: str
    change: str             # added / removed / changed
    old: object = None
    new: object = None

    @property
    def old_json(self) -> str:
        return json.dumps(self.old, ensure_ascii=False) if self.change != ADDED else ""

    @property
    def new_json(self) -> str:
        return json.dumps(self.new, ensure_ascii=False) if self.change != REMOVED else ""


@dataclass
class DiffLine:
    kind: str               # "hunk", "add", "del", "context"
    text: str


@dataclass
class FileDiff:
    file: str
    change: str             # added / removed / changed
    unified: str            # the diff as text (difflib.unified_diff)
    lines: list[DiffLine] = field(default_factory=list)
    added: int = 0
    removed: int = 0


@dataclass
class VersionDiff:
    old_label: str
    new_label: str
    manifest: list[ManifestChange]
    files: list[FileDiff]
    unchanged_files: list[str]

    @property
    def is_empty(self) -> bool:
        return not self.manifest and not self.files

    def as_dict(self) -> dict:
        return {
            "old": self.old_label,
            "new": self.new_label,
            "manifest": [{"path": c.path, "change": c.change, "old": c.old, "new": c.new} for c in self.manifest],
            "files": [{"file": f.file, "change": f.change, "diff": f.unified, "added": f.added, "removed": f.removed}
                      for f in self.files],
            "unchanged_files": self.unchanged_files,
        }


def flatten(value, prefix: str = "") -> dict[str, object]:
    """Objects become dotted paths (``handlers.sync.schedule.every``); lists and scalars
    are leaves, compared whole. An empty object is a leaf too, so adding ``{}`` shows."""
    if isinstance(value, dict) and value:
        out: dict[str, object] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value} if prefix else {}


def diff_manifests(old: dict, new: dict) -> list[ManifestChange]:
    before, after = flatten(old or {}), flatten(new or {})
    changes = []
    for path in sorted(set(before) | set(after)):
        if path not in after:
            changes.append(ManifestChange(path, REMOVED, old=before[path]))
        elif path not in before:
            changes.append(ManifestChange(path, ADDED, new=after[path]))
        elif before[path] != after[path] or type(before[path]) is not type(after[path]):
            changes.append(ManifestChange(path, CHANGED, old=before[path], new=after[path]))
    return changes


def diff_file(name: str, old: str | None, new: str | None, *, context: int = 3) -> FileDiff:
    change = ADDED if old is None else REMOVED if new is None else CHANGED
    old_lines = (old or "").splitlines(keepends=True)
    new_lines = (new or "").splitlines(keepends=True)
    raw = list(difflib.unified_diff(
        old_lines, new_lines, fromfile=f"a/{name}" if old is not None else "/dev/null",
        tofile=f"b/{name}" if new is not None else "/dev/null", n=context,
    ))
    result = FileDiff(file=name, change=change, unified="".join(line if line.endswith("\n") else line + "\n" for line in raw))
    for line in raw[2:]:
        text = line.rstrip("\n")
        if line.startswith("@@"):
            result.lines.append(DiffLine("hunk", text))
        elif line.startswith("+"):
            result.lines.append(DiffLine("add", text))
            result.added += 1
        elif line.startswith("-"):
            result.lines.append(DiffLine("del", text))
            result.removed += 1
        else:
            result.lines.append(DiffLine("context", text))
    return result


def diff_content(old_manifest: dict, old_files: dict, new_manifest: dict, new_files: dict, *,
                 old_label: str = "old", new_label: str = "new") -> VersionDiff:
    old_files, new_files = old_files or {}, new_files or {}
    files, unchanged = [], []
    for name in sorted(set(old_files) | set(new_files)):
        before, after = old_files.get(name), new_files.get(name)
        if before == after:
            unchanged.append(name)
        else:
            files.append(diff_file(name, before, after))
    return VersionDiff(old_label=old_label, new_label=new_label, manifest=diff_manifests(old_manifest, new_manifest),
                       files=files, unchanged_files=unchanged)


def diff_versions(old, new) -> VersionDiff:
    """The difference from version ``old`` to version ``new`` (either may be the draft)."""
    return diff_content(old.manifest, old.files, new.manifest, new.files, old_label=old.label, new_label=new.label)
