"""Values several test modules share."""

from __future__ import annotations

import json
from pathlib import Path

from ci.core.config import RunConfig, build_config

# `dar -V` as Debian's packages print it: bookworm's dar 2.7.8-2+b9 and trixie's 2.7.17-1+b20.
DAR_V_BOOKWORM = (Path(__file__).parent / "dar-V/bookworm-2.7.8.txt").read_text()
DAR_V_TRIXIE = (Path(__file__).parent / "dar-V/trixie-2.7.17.txt").read_text()

AMD64 = {
    "digest": "sha256:" + "a" * 64,
    "image_id": "sha256:" + "b" * 64,
    "base_image": "ubuntu:24.04",
    "base_digest": "sha256:" + "c" * 64,
    "base_local_id": None,
    "packages_sha256": "1" * 64,
    "sbom_sha256": "0" * 64,
    "signature": "r:sha256-" + "a" * 64 + ".sig",
    "signature_digest": "sha256:" + "e" * 64,
    "attestation": "r:sha256-" + "a" * 64 + ".att",
    "attestation_digest": "sha256:" + "f" * 64,
    "provenance_sha256": "2" * 64,
    "vulnerabilities": {
        "packages": 137,
        "findings": 2,
        "fixable": 1,
        "exceptions": 1,
        "database": "Ubuntu 2026-11-30T04:00:00Z sha256:" + "3" * 64,
        "sha256": "4" * 64,
    },
}
HISTORY_ENTRY = {
    "build_number": 1,
    "tag": "1.0.0",
    "image_ref": "r@sha256:" + "a" * 64,
    "digest": "sha256:" + "a" * 64,
    "dar_backup_version": "1.1.11",
    "dar_version": "2.7.8",
    "par2_version": "0.8.1",
    "git_revision": "abc",
    "created": "2026-01-01T00:00:00Z",
    "signing": {
        "identity": "key sha256:" + "d" * 64,
        "signature": "r:sha256-" + "a" * 64 + ".sig",
        "signature_digest": "sha256:" + "e" * 64,
        "attestation": "r:sha256-" + "a" * 64 + ".att",
        "attestation_digest": "sha256:" + "f" * 64,
        "attested": [
            "https://cyclonedx.org/bom",
            "https://slsa.dev/provenance/v1",
            "https://cosign.sigstore.dev/attestation/vuln/v1",
        ],
    },
    "platforms": {"linux/amd64": AMD64},
    "notes": "",
}
# The same release as history format 4 recorded it, before the vulnerability scan.
FORMAT_4_ENTRY = {
    **HISTORY_ENTRY,
    "signing": {**HISTORY_ENTRY["signing"], "attested": HISTORY_ENTRY["signing"]["attested"][:2]},
    "platforms": {"linux/amd64": {k: v for k, v in AMD64.items() if k != "vulnerabilities"}},
}
# The same release as history format 3 recorded it, before provenance.
FORMAT_3_ENTRY = {
    **HISTORY_ENTRY,
    "signing": {k: v for k, v in HISTORY_ENTRY["signing"].items() if k != "attested"},
    "platforms": {"linux/amd64": {k: v for k, v in AMD64.items() if k not in ("provenance_sha256", "vulnerabilities")}},
}


def release_config(
    repo: str,
    checkout: Path,
    version: str,
    *,
    dry_run: bool = False,
    platforms: tuple[str, ...] = (),
    vuln_db: Path | None = None,
) -> RunConfig:
    """The run a release from `checkout` (a clean clone) to `repo` starts with."""
    return build_config(
        image_version=version,
        dar_backup_version=None,
        base_image=None,
        repo=repo,
        dry_run=dry_run,
        report_dir=checkout / "reports",
        env={},
        root=checkout,
        platforms=platforms,
        vuln_db=str(vuln_db) if vuln_db else None,
    )


# What an image prints for its SBOM: /etc/os-release, dpkg-query, the venv's distributions.
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'
DPKG = "base-files\t12.4+deb12u5\tamd64\ndar\t2.7.8-2+b9\tamd64\npar2\t0.8.1-2\tamd64\npython3\t3.11.2-1+b1\tamd64\n"
DISTS = json.dumps(
    [
        {"name": "dar-backup", "version": "1.1.11", "license": "GPL-3.0-or-later"},
        {"name": "rich", "version": "14.1.0", "license": "MIT"},
        {"name": "Pygments", "version": "2.19.2", "license": "BSD License"},
        {"name": "inputimeout", "version": "1.0.4", "license": ""},
    ]
)
