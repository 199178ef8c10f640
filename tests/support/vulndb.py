"""Vulnerability databases the tests write: `DIR/<Ecosystem>/all.zip` of OSV JSON records, as the bucket serves them."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# The e2e images build on a bootstrapped Debian bookworm: their packages are Debian:12's.
IMAGE_ECOSYSTEMS = ("Debian", "PyPI")
ECOSYSTEM_NAMES = {"Debian": "Debian:12", "Ubuntu": "Ubuntu:24.04:LTS", "PyPI": "PyPI"}
# A record against nothing in the image, so that every archive holds one.
UNRELATED = "Debian", "no-such-package-in-the-image"


def record(
    ident: str,
    ecosystem: str,
    package: str,
    fixed: str | None,
    *,
    severity: str | None = None,
    cvss: str | None = None,
    introduced: str = "0",
) -> dict[str, Any]:
    """An OSV record: the package affected from `introduced`, fixed in `fixed` (None: no fix)."""
    events: list[dict[str, str]] = [{"introduced": introduced}] + ([{"fixed": fixed}] if fixed else [])
    found: dict[str, Any] = {
        "schema_version": "1.6.0",
        "id": ident,
        "modified": "2026-11-30T00:00:00Z",
        "summary": f"a test record against {package}",
        "affected": [
            {
                "package": {"ecosystem": ECOSYSTEM_NAMES[ecosystem], "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
            }
        ],
    }
    if severity is not None:
        found["database_specific"] = {"severity": severity}
    if cvss is not None:
        found["severity"] = [{"type": "CVSS_V3", "score": cvss}]
    return found


def write_db(
    where: Path, records: Sequence[Mapping[str, Any]] = (), ecosystems: Sequence[str] = IMAGE_ECOSYSTEMS
) -> Path:
    """A database of these records in `where`, one archive per ecosystem (each at least the unrelated record)."""
    by_ecosystem: dict[str, list[Mapping[str, Any]]] = {name: [] for name in ecosystems}
    for entry in records:
        name = entry["affected"][0]["package"]["ecosystem"].split(":")[0]
        by_ecosystem.setdefault(name, []).append(entry)
    for name, entries in by_ecosystem.items():
        if name not in ecosystems:
            continue
        if name == UNRELATED[0] or not entries:
            entries = [*entries, record(f"TEST-UNRELATED-{name}", name, UNRELATED[1], "1.0")]
        (where / name).mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(where / name / "all.zip", "w", zipfile.ZIP_DEFLATED) as archive:
            for entry in entries:
                archive.writestr(f"{entry['id']}.json", json.dumps(entry))
    return where


def damage_first_record(archive: Path) -> None:
    """Flip bytes inside the first member's compressed data: the zip still opens, that member's CRC fails."""
    data = bytearray(archive.read_bytes())
    name_length = int.from_bytes(data[26:28], "little") + int.from_bytes(data[28:30], "little")
    for offset in range(30 + name_length + 4, 30 + name_length + 12):
        data[offset] ^= 0x55
    archive.write_bytes(bytes(data))
