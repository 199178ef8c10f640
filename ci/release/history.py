"""doc/build-history.json: validated on read and before write, appended atomically."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import semver

from ci.core.errors import HistoryError
from ci.core.files import write_atomically
from ci.core.platforms import SUPPORTED
from ci.release.signing import PROVENANCE, SBOM, VULN

# 2: one entry per release of one or more platforms, each platform with its own digest and SBOM.
# 3: a platform's base is a registry digest or, for a base no registry serves, a local image id.
# 4: each release also says which predicates were attested and verified (`signing.attested`) and
#    each platform the sha256 of its SLSA provenance.
# 5: each platform its vulnerability scan (`vulnerabilities`: counts, database, predicate sha256),
#    attested and verified. Formats 3 and 4 are read by migrating them (`migrate`).
FORMAT = 5
CYCLONEDX, SLSA_PROVENANCE, VULN_SCAN = SBOM.predicate_type, PROVENANCE.predicate_type, VULN.predicate_type
# Every entry has exactly these keys; the value types are checked too.
ENTRY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "build_number": int,
    "tag": str,
    # What the tag names: the image index of a multi-platform release, else the one manifest.
    "image_ref": str,
    "digest": str,
    "dar_backup_version": str,
    "dar_version": str,
    "par2_version": str,
    "git_revision": str,
    "created": str,
    # Who signed, and the signature and SBOM attestations of `digest` (an index carries every
    # platform's SBOM; cosign signed each platform manifest with it).
    "signing": dict,
    "platforms": dict,
    # Why it was made (a refresh names what changed).
    "notes": str,
}
SIGNING_FIELDS = ("identity", "signature", "signature_digest", "attestation", "attestation_digest")
# The predicate types attested on `attestation` and verified before any floating tag moved.
ATTESTED = "attested"
# Per platform: what a refresh compares (base digest, package set) and where its signature and SBOM are.
PLATFORM_FIELDS: dict[str, type | tuple[type, ...]] = {
    "digest": str,
    "image_id": str,
    "base_image": str,
    # Exactly one of these two: the base's registry digest, or the engine's id of a local base.
    "base_digest": (str, type(None)),
    "base_local_id": (str, type(None)),
    "packages_sha256": str,
    "sbom_sha256": str,
    "signature": str,
    "signature_digest": str,
    "attestation": str,
    "attestation_digest": str,
    # sha256 of the SLSA provenance predicate attested on `digest` and verified; None only in a
    # release made before provenance existed (migrated from format 2).
    "provenance_sha256": (str, type(None)),
    # The attested vulnerability scan; None only in a release made before the scan existed (format ≤ 4).
    "vulnerabilities": (dict, type(None)),
}
VULN_FIELDS: dict[str, type | tuple[type, ...]] = {
    "packages": int,
    "findings": int,
    "fixable": int,
    "exceptions": int,
    # Each archive the scan read: ecosystem, date and sha256.
    "database": str,
    "sha256": str,
}


def validate_fields(value: object, fields: Mapping[str, type | tuple[type, ...]], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HistoryError(f"{where} is not an object")
    if set(value) != set(fields):
        missing, extra = set(fields) - set(value), set(value) - set(fields)
        raise HistoryError(f"{where} has missing keys {sorted(missing)} / unknown keys {sorted(extra)}")
    for key, kind in fields.items():
        if not isinstance(value[key], kind) or isinstance(value[key], bool):
            raise HistoryError(f"{where}: {key} has the wrong type")
    if "digest" in value and not value["digest"].startswith("sha256:"):
        raise HistoryError(f"{where}: digest {value['digest']!r} is not sha256:…")
    return value


def validate_base(facts: Mapping[str, Any], where: str) -> None:
    """One base identity: a registry digest or a local image id, never both or neither."""
    known = [key for key in ("base_digest", "base_local_id") if facts[key] is not None]
    if len(known) != 1:
        raise HistoryError(f"{where}: exactly one of base_digest and base_local_id must be set")
    if not facts[known[0]].startswith("sha256:"):
        raise HistoryError(f"{where}: {known[0]} {facts[known[0]]!r} is not sha256:…")


def validate_entry(value: object, where: str) -> None:
    entry = validate_fields(value, ENTRY_FIELDS, where)
    if not semver.Version.is_valid(entry["tag"]):
        raise HistoryError(f"{where}: tag {entry['tag']!r} is not semver")
    signed = dict(entry["signing"])
    attested = signed.pop(ATTESTED, None)
    if sorted(signed) != sorted(SIGNING_FIELDS) or not all(isinstance(v, str) and v for v in signed.values()):
        raise HistoryError(
            f"{where}: signing must have exactly {', '.join(SIGNING_FIELDS)}, all non-empty, and {ATTESTED}"
        )
    if not isinstance(attested, list) or CYCLONEDX not in attested or not all(isinstance(v, str) for v in attested):
        raise HistoryError(f"{where}: signing.{ATTESTED} must list the predicate types attested, the SBOM's among them")
    if not entry["platforms"] or not all(name in SUPPORTED for name in entry["platforms"]):
        raise HistoryError(f"{where}: platforms must name one or more of {', '.join(SUPPORTED)}")
    for name, facts in entry["platforms"].items():
        validate_fields(facts, PLATFORM_FIELDS, f"{where}.platforms[{name}]")
        validate_base(facts, f"{where}.platforms[{name}]")
        if facts["vulnerabilities"] is not None:
            validate_fields(facts["vulnerabilities"], VULN_FIELDS, f"{where}.platforms[{name}].vulnerabilities")


def validate_new(entry: Mapping[str, Any], where: str) -> None:
    """What a release writes now: its SLSA provenance and scan were attested and verified, on every platform."""
    validate_entry(entry, where)
    if SLSA_PROVENANCE not in entry["signing"][ATTESTED]:
        raise HistoryError(f"{where}: no verified SLSA provenance in signing.{ATTESTED}")
    if VULN_SCAN not in entry["signing"][ATTESTED]:
        raise HistoryError(f"{where}: no verified vulnerability scan in signing.{ATTESTED}")
    if any(facts["provenance_sha256"] is None for facts in entry["platforms"].values()):
        raise HistoryError(f"{where}: every platform needs its provenance_sha256")
    if any(facts["vulnerabilities"] is None for facts in entry["platforms"].values()):
        raise HistoryError(f"{where}: every platform needs its vulnerabilities")


def migrate(document: object) -> object:
    """An older document as the current format, one step at a time: format 3 releases attested
    their SBOMs and no provenance (→ 4); format 4 releases were not scanned (→ 5).

    The document is left as it is when it is anything else; validation says what is wrong.
    """
    steps = {3: ({"provenance_sha256": None}, [CYCLONEDX]), 4: ({"vulnerabilities": None}, None)}
    while isinstance(document, dict) and document.get("format") in steps and isinstance(document.get("builds"), list):
        added, attested = steps[document["format"]]
        builds = []
        for entry in document["builds"]:
            if (
                isinstance(entry, dict)
                and isinstance(entry.get("signing"), dict)
                and isinstance(entry.get("platforms"), dict)
            ):
                platforms = {
                    name: {**facts, **added} if isinstance(facts, dict) else facts
                    for name, facts in entry["platforms"].items()
                }
                signed = entry["signing"] if attested is None else {**entry["signing"], ATTESTED: attested}
                entry = {**entry, "signing": signed, "platforms": platforms}
            builds.append(entry)
        document = {"format": document["format"] + 1, "builds": builds}
    return document


def validate_document(document: object) -> list[dict[str, Any]]:
    document = migrate(document)
    if (
        not isinstance(document, dict)
        or document.get("format") != FORMAT
        or not isinstance(document.get("builds"), list)
    ):
        raise HistoryError(f"expected {{'format': {FORMAT}, 'builds': [...]}} (or format 3 or 4, migrated on read)")
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
        return validate_document(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HistoryError(f"{path} is not valid JSON: {err}") from None
    except HistoryError as err:
        raise HistoryError(f"{path}: {err}") from None


def next_entry(builds: list[dict[str, Any]], values: Mapping[str, Any]) -> dict[str, Any]:
    entry = {**values, "build_number": len(builds) + 1}
    validate_new(entry, "new entry")
    return entry


def append(path: Path, entry: dict[str, Any]) -> None:
    """Re-read and re-validate, then write history + entry via a temp file and rename.

    An older history is written back in the current format, its entries migrated.
    """
    builds = read(path)
    document = {"format": FORMAT, "builds": [*builds, entry]}
    validate_document(document)
    write_atomically(path, json.dumps(document, indent=2) + "\n")
