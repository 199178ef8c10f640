"""The vulnerability gate on the real image: its SBOM scanned by the real osv-scanner with databases the tests write.

One release is refused for real (the whole pipeline, then nothing pushed); the other cases run
the gate itself on the SBOM the final stage wrote for the built image, which is what a release
scans, without a release each.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from ci.core.config import build_config
from ci.core.errors import StageFailure
from ci.core.platforms import host_platform
from ci.core.report import Report
from ci.image.sbom import sbom_file
from ci.stages import vulnscan
from ci.stages.build import Built
from tests.support.registry import LocalRegistry
from tests.support.releasing import NAME, release
from tests.support.vulndb import record, write_db

pytestmark = [pytest.mark.engine, pytest.mark.registry]
HOST = host_platform()
DAR_HIGH = record("TEST-DAR-1", "Debian", "dar", "2.7.9-1", severity="HIGH")


@pytest.fixture(autouse=True)
def signing_key(cosign_key, monkeypatch):
    for name, value in cosign_key.env().items():
        monkeypatch.setenv(name, value)


def test_a_fixable_finding_in_the_image_refuses_the_release_names_it_and_pushes_nothing(
    image, registry: LocalRegistry, checkout: Path, tmp_path: Path
):
    db = write_db(tmp_path / "db", [DAR_HIGH])
    before = (checkout / "doc/build-history.json").read_bytes()
    env = {"DAR_BACKUP_VULN_DB": str(db)}
    done = release(checkout, "--image-version", "1.0.0", "--repo", f"{registry.address}/{NAME}", env=env)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == "error: vulnerability gate: 1 fixable at or above high"
    assert lines[-2] == f"{HOST}: TEST-DAR-1 dar 2.7.8-2+b9 fixed in 2.7.9-1 (high)"
    # Refused right after the build: neither the test stage's minutes nor a push were spent on it.
    assert "[final " in done.stdout and "[test " not in done.stdout and "[release] push " not in done.stdout
    assert registry.tags(NAME) == [] and (checkout / "doc/build-history.json").read_bytes() == before
    scanned = json.loads((checkout / "reports" / vulnscan.scan_file(HOST)).read_text())
    assert scanned["scanner"]["result"]["refused"] == ["TEST-DAR-1"]


@pytest.fixture(scope="module")
def built(final_reports: Path) -> Built:
    """The built image as the gate sees it: its platform and the SBOM the final stage wrote for it."""
    sbom = (final_reports / sbom_file(HOST)).read_text()
    return Built(HOST, None, None, {}, {}, sbom)  # type: ignore[arg-type]


EXPIRED = '[[IgnoredVulns]]\nid = "TEST-DAR-1"\nignoreUntil = 2026-01-31\nreason = "was not reachable"\n'
CURRENT = (
    '[[IgnoredVulns]]\nid = "TEST-DAR-1"\nignoreUntil = 2099-01-31\nreason = "dar\'s affected code is not built"\n'
)


@pytest.mark.parametrize(
    ("case", "records", "exceptions", "outcome"),
    [
        ("fixed at the installed version", [record("T-OLD", "Debian", "dar", "2.7.8-2+b9", severity="HIGH")], "", []),
        ("below the threshold", [record("T-MED", "PyPI", "rich", "99.0", severity="MODERATE")], "", ["T-MED"]),
        ("no severity counts as high", [record("T-UNRATED", "PyPI", "dar-backup", "1.1.12")], "", "T-UNRATED"),
        ("an exception with its reason", [DAR_HIGH], CURRENT, ["exception: TEST-DAR-1"]),
        ("an expired exception", [DAR_HIGH], EXPIRED, "the exception for TEST-DAR-1 expired on 2026-01-31"),
        ("a missing archive", [], "", "no .*/PyPI/all.zip"),
        ("a corrupt archive", [], "", "Debian/all.zip is (corrupt|unreadable)"),
        ("no database", [], "", "no vulnerability database"),
    ],
)
def test_the_gate_on_the_built_image(built: Built, tmp_path: Path, case, records, exceptions, outcome):
    db = write_db(
        tmp_path / "db", records, ecosystems=("Debian",) if case == "a missing archive" else ("Debian", "PyPI")
    )
    if case == "a corrupt archive":
        data = (db / "Debian/all.zip").read_bytes()
        (db / "Debian/all.zip").write_bytes(data[: len(data) - 30])
    (tmp_path / "osv-scanner.toml").write_text(exceptions)
    config = build_config(
        image_version="1.0.0", dar_backup_version=None, base_image=None, repo="127.0.0.1:9/dar-backup",
        dry_run=False, report_dir=tmp_path / "reports", env={}, vuln_db=None if case == "no database" else str(db),
    )  # fmt: skip
    report = Report("release", "docker")

    async def go() -> list:
        return await vulnscan.gate(config, [built], report, exceptions=tmp_path / "osv-scanner.toml")

    if isinstance(outcome, str):
        with pytest.raises(StageFailure, match=outcome):
            anyio.run(go)
        return
    (scan,) = anyio.run(go)
    # Every SBOM component was looked up: the venv's distributions and the dpkg database alike.
    components = json.loads(built.sbom)["components"]
    assert scan.packages == len(components) and {c["purl"].split("/")[0] for c in components} == {"pkg:deb", "pkg:pypi"}
    assert [f.id for f in scan.findings] == [o for o in outcome if not o.startswith("exception")]
    assert all(any(o in note for note in report.notes) for o in outcome)
    if exceptions:
        assert f"{HOST} exception: TEST-DAR-1 until 2099-01-31: dar's affected code is not built" in report.notes
