"""Reading and writing packages: a folder or a .zip holding manifest.json, Lua files, OpenAPI
documents and README.md.

Reading is defensive: a package comes from outside. Every limit is checked while reading,
counting the bytes actually inflated rather than trusting the sizes in the zip headers, and a
refused package raises ``PackageRefused`` before anything is written anywhere.
"""
from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from django.conf import settings

from .. import jsonvalues
from .manifest import cap as manifest_cap
from .manifest import json_refusal, size_refusal
from .report import Report
from .validation import is_api_document, is_lua

CHUNK = 64 * 1024
FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # exports are byte-for-byte reproducible


def limit(name: str) -> int:
    return int(getattr(settings, name))


def max_entries() -> int:
    return limit("JUNCTION_PACKAGE_MAX_FILES")


def max_file_bytes() -> int:
    return max(limit("JUNCTION_BUNDLE_MAX_FILE_BYTES"), limit("JUNCTION_APISCHEMA_MAX_BYTES"))


def max_total_bytes() -> int:
    return limit("JUNCTION_PACKAGE_MAX_BYTES")


def max_ratio() -> int:
    return limit("JUNCTION_PACKAGE_MAX_RATIO")


RATIO_FLOOR = 1024 * 1024  # below this many inflated bytes the ratio is not a threat


class PackageRefused(Exception):
    """The package is unsafe or unreadable; nothing was written."""

    def __init__(self, code: str, message: str, file: str | None = None):
        super().__init__(message)
        self.code, self.message, self.file = code, message, file

    def as_report(self) -> Report:
        report = Report()
        report.add(self.code, self.message, file=self.file)
        return report


@dataclass
class Package:
    """A package read into memory. ``files`` holds every kept file (path → text) other than
    manifest.json; ``manifest`` is the parsed manifest, or None with ``manifest_error`` set."""

    manifest: object = None
    files: dict[str, str] = field(default_factory=dict)
    manifest_error: tuple[str, str] | None = None  # (code, message)
    ignored: list[str] = field(default_factory=list)

    @property
    def bundle(self) -> dict[str, str]:
        return {p: t for p, t in self.files.items() if is_lua(p)}

    @property
    def api_documents(self) -> dict[str, str]:
        return {p: t for p, t in self.files.items() if is_api_document(p)}

    @property
    def readme(self) -> str | None:
        return self.files.get("README.md")


# --- Entry names ------------------------------------------------------------------------------

def safe_name(name: str) -> str:
    """A plain relative POSIX path, or PackageRefused."""
    if not name or "\x00" in name or "\\" in name:
        raise PackageRefused("package_unsafe_path", f"unsafe entry name {name!r}", file=name or None)
    pure = PurePosixPath(name)
    if name.startswith("/") or pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise PackageRefused("package_unsafe_path", f"absolute path {name!r} refused", file=name)
    if any(part in ("..", "") for part in name.rstrip("/").split("/")) or ".." in pure.parts:
        raise PackageRefused("package_unsafe_path", f"path {name!r} leaves the package", file=name)
    return str(pure)


def _skipped(name: str) -> bool:
    """Hidden files and folders (.git, .DS_Store) and macOS resource forks are not content."""
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(name).parts)


def _decode(name: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackageRefused("package_encoding", f"{name} is not valid UTF-8 (byte {exc.start})", file=name) from None
    return text[1:] if text.startswith("\ufeff") else text


def _kept(name: str) -> bool:
    return name == "manifest.json" or name == "README.md" or is_lua(name) or is_api_document(name)


# --- Reading ----------------------------------------------------------------------------------

def read_package(source) -> Package:
    """Read a package from a folder path, a .zip path, zip bytes or a binary file object."""
    if isinstance(source, (bytes, bytearray)):
        if len(source) > max_total_bytes():
            raise PackageRefused("package_too_large", f"the archive is larger than {max_total_bytes():,} bytes")
        return read_zip(io.BytesIO(bytes(source)))
    if hasattr(source, "read"):
        if hasattr(source, "seek") and hasattr(source, "tell"):
            source.seek(0, os.SEEK_END)
            size = source.tell()
            source.seek(0)
            if size > max_total_bytes():
                raise PackageRefused("package_too_large", f"the archive is larger than {max_total_bytes():,} bytes")
        return read_zip(source)
    path = Path(source)
    if path.is_dir():
        return read_folder(path)
    if path.is_file():
        if path.stat().st_size > max_total_bytes():
            raise PackageRefused("package_too_large", f"the archive is larger than {max_total_bytes():,} bytes")
        with path.open("rb") as handle:
            return read_zip(handle)
    raise PackageRefused("package_unreadable", f"{source} is neither a folder nor a .zip file")


def _strip_wrapper(names: list[str]) -> str:
    """``zip -r pkg.zip pkg/`` puts everything under ``pkg/``: detect that single wrapping folder."""
    if "manifest.json" in names:
        return ""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1 and all("/" in name for name in names):
        prefix = tops.pop() + "/"
        if prefix + "manifest.json" in names:
            return prefix
    return ""


def read_zip(handle) -> Package:
    """Read a zip archive with every limit enforced while inflating."""
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PackageRefused("package_unreadable", f"not a readable .zip archive: {exc}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_entries():
            raise PackageRefused("package_too_many_files", f"the archive has {len(infos)} entries, at most {max_entries()} are allowed")
        seen: set[str] = set()
        entries = []
        for info in infos:
            name = safe_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # whatever create_system claims
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                raise PackageRefused("package_symlink", f"{name} is {kind}; packages hold plain files only", file=name)
            folded = name.rstrip("/").casefold()
            if folded in seen:
                raise PackageRefused("package_duplicate_entry", f"{name} appears twice in the archive", file=name)
            seen.add(folded)
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise PackageRefused("package_encrypted", f"{name} is encrypted", file=name)
            entries.append((name, info))

        prefix = _strip_wrapper([name for name, _ in entries if not _skipped(name)])
        package = Package()
        total = 0
        compressed_total = 0
        raw: dict[str, bytes] = {}
        for name, info in entries:
            relative = name[len(prefix):] if prefix else name
            if _skipped(relative):
                continue
            if not _kept(relative):
                package.ignored.append(relative)
                continue
            data, total = _inflate(archive, info, relative, total)
            compressed_total += max(info.compress_size, 1)
            raw[relative] = data
        if total > RATIO_FLOOR and total / max(compressed_total, 1) > max_ratio():
            raise PackageRefused("package_bomb", f"the archive inflates {total / compressed_total:.0f} times; refused as a zip bomb")
    return _assemble(package, raw)


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, total: int) -> tuple[bytes, int]:
    """Read one entry, counting real bytes against the per-file, total and ratio caps."""
    per_file, overall, ratio = max_file_bytes(), max_total_bytes(), max_ratio()
    buffer = bytearray()
    try:
        with archive.open(info) as stream:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                buffer += chunk
                total += len(chunk)
                if len(buffer) > RATIO_FLOOR and len(buffer) / max(info.compress_size, 1) > ratio:
                    raise PackageRefused("package_bomb", f"{name} inflates more than {ratio} times its compressed size; "
                                         "refused as a zip bomb", file=name)
                if len(buffer) > per_file:
                    raise PackageRefused("package_file_too_large", f"{name} is larger than {per_file:,} bytes", file=name)
                if total > overall:
                    raise PackageRefused("package_too_large", f"the package inflates to more than {overall:,} bytes", file=name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise PackageRefused("package_unreadable", f"{name} cannot be read: {exc}", file=name) from None
    except RuntimeError as exc:  # zipfile raises it for encrypted entries without a password
        raise PackageRefused("package_encrypted", f"{name} cannot be read: {exc}", file=name) from None
    return bytes(buffer), total


def read_folder(root: Path) -> Package:
    """Read a package folder. Symbolic links anywhere are refused, hidden entries skipped."""
    root = Path(root)
    raw: dict[str, bytes] = {}
    package = Package()
    count, total = 0, 0
    per_file, overall = max_file_bytes(), max_total_bytes()
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as listing:
            for entry in sorted(listing, key=lambda e: e.name):
                relative = Path(entry.path).relative_to(root).as_posix()
                if _skipped(relative):
                    continue
                count += 1
                if count > max_entries():
                    raise PackageRefused("package_too_many_files", f"the folder holds more than {max_entries()} entries")
                if entry.is_symlink():
                    raise PackageRefused("package_symlink", f"{relative} is a symbolic link; packages hold plain files only",
                                         file=relative)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    raise PackageRefused("package_symlink", f"{relative} is not a regular file", file=relative)
                safe_name(relative)
                if not _kept(relative):
                    package.ignored.append(relative)
                    continue
                with open(entry.path, "rb") as handle:
                    data = handle.read(per_file + 1)
                if len(data) > per_file:
                    raise PackageRefused("package_file_too_large", f"{relative} is larger than {per_file:,} bytes", file=relative)
                total += len(data)
                if total > overall:
                    raise PackageRefused("package_too_large", f"the package is larger than {overall:,} bytes", file=relative)
                raw[relative] = data
    return _assemble(package, raw)


def _assemble(package: Package, raw: dict[str, bytes]) -> Package:
    for name, data in sorted(raw.items()):
        text = _decode(name, data)
        if name == "manifest.json":
            if len(data) > manifest_cap("bytes"):
                package.manifest_error = size_refusal(len(data))
                continue
            try:
                package.manifest = jsonvalues.loads(text)
            except jsonvalues.JSONRefused as exc:
                package.manifest_error = json_refusal(exc)
                continue
            if not isinstance(package.manifest, dict):
                package.manifest_error = ("manifest_json", "manifest.json must hold a JSON object")
                package.manifest = None
        else:
            package.files[name] = text
    if package.manifest is None and package.manifest_error is None:
        package.manifest_error = ("manifest_missing", "the package has no manifest.json at its root")
    return package


# --- Writing ----------------------------------------------------------------------------------

def build_zip(manifest: dict, files: dict[str, str], *, readme: str | None = None,
              api_documents: dict[str, str] | None = None) -> bytes:
    """A package .zip: manifest.json, the bundle, API documents and README.md, in a fixed
    order with fixed timestamps so equal content gives equal bytes."""
    members: dict[str, str] = {"manifest.json": json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"}
    for name, text in sorted((api_documents or {}).items()):
        members[safe_name(name)] = text
    for name, text in sorted(files.items()):
        members[safe_name(name)] = text
    if readme:
        members["README.md"] = readme if readme.endswith("\n") else readme + "\n"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.create_system = 3
            archive.writestr(info, text.encode("utf-8"))
    return out.getvalue()


def package_report(package: Package, *, integration=None) -> Report:
    """Validate a package that was read successfully (the manifest may still be broken)."""
    from .validation import validate_package

    if package.manifest_error is not None:
        report = Report()
        code, message = package.manifest_error
        report.add(code, message, file="manifest.json")
        return report
    report = validate_package(package.files, package.manifest, integration=integration)
    for name in package.ignored:
        report.add("package_file_ignored", f"{name} is not Lua, manifest.json, README.md or an API document; ignored",
                   file=name)
    return report


def validate_path(source, *, integration=None) -> Report:
    """Read and validate a package in one step; a refusal becomes a one-error report."""
    try:
        package = read_package(source)
    except PackageRefused as exc:
        return exc.as_report()
    return package_report(package, integration=integration)
