"""Building packages in tests: zips from dicts, with the odd hostile entry."""
from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
GOOD = FIXTURES / "good" / "printer-sync"

MINI_MANIFEST = {
    "name": "mini",
    "title": "Mini",
    "permissions": ["log"],
    "handlers": {"sync": {"type": "timer", "file": "main.lua", "function": "sync", "schedule": {"every": "5m"}}},
}
MINI_LUA = 'function sync(ctx, input)\n  ctx.log.info("tick")\n  return { ok = true }\nend\n'


def folder_files(folder: Path = GOOD) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and not p.name.startswith(".")}


def make_zip(entries: dict[str, bytes | str] | None = None, *, manifest: dict | None = None, extra=()) -> bytes:
    """A zip of ``entries`` (default: the mini package). ``extra`` holds (ZipInfo, data)
    pairs written as they are, for entries zipfile would not make on its own."""
    if entries is None:
        entries = {"manifest.json": json.dumps(manifest or MINI_MANIFEST), "main.lua": MINI_LUA}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data.encode() if isinstance(data, str) else data)
        for info, data in extra:
            archive.writestr(info, data)
    return out.getvalue()


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def patch_central_header(data: bytes, name: str, offset: int, value: bytes) -> bytes:
    """Overwrite bytes of ``name``'s central-directory header (what zip readers list), as a
    hand-crafted hostile archive would: offset 8 is the flags, 24 the uncompressed size."""
    data = bytearray(data)
    start = data.find(b"PK\x01\x02")
    while start >= 0:
        length = int.from_bytes(data[start + 28:start + 30], "little")
        if data[start + 46:start + 46 + length] == name.encode():
            data[start + offset:start + offset + len(value)] = value
            return bytes(data)
        start = data.find(b"PK\x01\x02", start + 46)
    raise AssertionError(f"{name} not in the archive")
