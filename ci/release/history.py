"""doc/build-history.json: validated on read and before write, appended atomically."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import semver

from ci.report import write_atomically

FORMAT = 1
# Every entry has exactly these keys; the value types are checked too.
ENTRY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "build_number": int,
    "tag": str,
    "image_ref": str,
    "digest": str,
    "image_id": str,
    "dar_backup_version": str,
    "dar_version": str,
    "par2_version": str,
    "base_image": str,
    "base_digest": (str, type(None)),
    "git_revision": str,
    "created": str,
    "signing": dict,
    # What a refresh compares: the package set's digest (the base digest is above), and why it was made.
    "packages_sha256": str,
    "notes": str,
}
SIGNING_FIELDS = (
    "identity",
    "signature",
    "signature_digest",
    "attestation",
    "attestation_digest",
    "sbom_sha256",
)


class HistoryError(ValueError):
    pass


def validate_entry(entry: object, where: str) -> None:
    if not isinstance(entry, dict):
        raise HistoryError(f"{where} is not an object")
    if set(entry) != set(ENTRY_FIELDS):
        missing, extra = set(ENTRY_FIELDS) - set(entry), set(entry) - set(ENTRY_FIELDS)
        raise HistoryError(f"{where} has missing keys {sorted(missing)} / unknown keys {sorted(extra)}")
    for key, kind in ENTRY_FIELDS.items():
        if not isinstance(entry[key], kind) or isinstance(entry[key], bool):
            raise HistoryError(f"{where}: {key} has the wrong type")
    if not semver.Version.is_valid(entry["tag"]):
        raise HistoryError(f"{where}: tag {entry['tag']!r} is not semver")
    if not entry["digest"].startswith("sha256:"):
        raise HistoryError(f"{where}: digest {entry['digest']!r} is not sha256:…")
    signed = entry["signing"]
    if sorted(signed) != sorted(SIGNING_FIELDS) or not all(isinstance(v, str) and v for v in signed.values()):
        raise HistoryError(f"{where}: signing must have exactly {', '.join(SIGNING_FIELDS)}, all non-empty")


def validate(document: object) -> list[dict[str, Any]]:
    if (
        not isinstance(document, dict)
        or document.get("format") != FORMAT
        or not isinstance(document.get("builds"), list)
    ):
        raise HistoryError(f"expected {{'format': {FORMAT}, 'builds': [...]}}")
    builds: list[dict[str, Any]] = document["builds"]
    for index, entry in enumerate(builds):
        validate_entry(entry, f"builds[{index}]")
        if entry["build_number"] != index + 1:
            raise HistoryError(f"builds[{index}]: build_number {entry['build_number']} should be {index + 1}")
    tags = [entry["tag"] for entry in builds]
    if len(set(tags)) != len(tags):
        raise HistoryError("a tag appears twice")
    return builds


def read(path: Path) -> list[dict[str, Any]]:
    """The builds so far; a missing file is an empty history, a malformed one an error."""
    if not path.exists():
        return []
    try:
        return validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HistoryError(f"{path} is not valid JSON: {err}") from None
    except HistoryError as err:
        raise HistoryError(f"{path}: {err}") from None


def next_entry(builds: list[dict[str, Any]], values: Mapping[str, Any]) -> dict[str, Any]:
    entry = {**values, "build_number": len(builds) + 1}
    validate_entry(entry, "new entry")
    return entry


def append(path: Path, entry: dict[str, Any]) -> None:
    """Re-read and re-validate, then write history + entry via a temp file and rename."""
    builds = read(path)
    document = {"format": FORMAT, "builds": [*builds, entry]}
    validate(document)
    write_atomically(path, json.dumps(document, indent=2) + "\n")
