"""The real osv-scanner, offline, over an SBOM the pipeline writes and databases the tests write (no engine)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import anyio
import pytest

from ci.core.errors import StageFailure
from ci.image import sbom, vulns
from tests.support.samples import DISTS, DPKG, OS_RELEASE
from tests.support.vulndb import damage_first_record, record, write_db

TODAY = dt.date(2026, 12, 1)


def sample_sbom(extra_debs: str = "") -> str:
    contents = sbom.ImageContents(
        sbom.parse_os_release(OS_RELEASE), sbom.parse_dpkg(DPKG + extra_debs), sbom.parse_distributions(DISTS)
    )
    return sbom.render(sbom.build_bom(contents, "1.0.0", "2026-01-01T00:00:00Z"))


SBOM = sample_sbom()


def scan(tmp_path: Path, records=(), exceptions: str = "", text: str = SBOM, **db) -> vulns.Scan:
    database = write_db(tmp_path / "db", records, **db)
    path = tmp_path / vulns.EXCEPTIONS_FILE
    path.write_text(exceptions)
    return anyio.run(vulns.scan_sbom, text, "linux/amd64", database, path, TODAY)


def test_every_sbom_component_is_looked_up_and_a_clean_database_finds_nothing(tmp_path):
    found = scan(tmp_path)
    assert found.packages == len(json.loads(SBOM)["components"]) == 8
    assert found.findings == () and found.refused("high") == []
    assert [a.ecosystem for a in found.archives] == ["Debian", "PyPI"]
    assert found.argv[1:3] == ("scan", "source") and "--offline" in found.argv and "--no-resolve" in found.argv


def test_a_fixable_high_finding_is_refused_and_named(tmp_path):
    found = scan(tmp_path, [record("TEST-DAR-1", "Debian", "dar", "2.7.9-1", severity="HIGH")])
    (finding,) = found.refused("high")
    assert finding.line == "TEST-DAR-1 dar 2.7.8-2+b9 fixed in 2.7.9-1 (high)"
    assert vulns.refusal([found], "high") == (
        "vulnerability gate: 1 fixable at or above high\nlinux/amd64: TEST-DAR-1 dar 2.7.8-2+b9 fixed in 2.7.9-1 (high)"
    )


def test_a_fix_at_or_below_the_installed_version_is_no_finding(tmp_path):
    records = [
        record("TEST-DAR-OLD", "Debian", "dar", "2.7.8-2+b9", severity="CRITICAL"),
        record("TEST-BACKUP-OLD", "PyPI", "dar-backup", "1.1.10", severity="CRITICAL"),
    ]
    assert scan(tmp_path, records).findings == ()


def test_below_the_threshold_or_without_a_fix_is_listed_and_not_refused_and_no_severity_counts_as_high(tmp_path):
    records = [
        record("TEST-RICH-MEDIUM", "PyPI", "rich", "14.1.1", cvss="CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:N"),
        record("TEST-PAR2-NOFIX", "Debian", "par2", None, severity="CRITICAL"),
        record("TEST-BACKUP-UNRATED", "PyPI", "dar-backup", "1.1.12"),
    ]
    found = scan(tmp_path, records)
    by_id = {f.id: f for f in found.findings}
    assert set(by_id) == {"TEST-RICH-MEDIUM", "TEST-PAR2-NOFIX", "TEST-BACKUP-UNRATED"}
    assert by_id["TEST-RICH-MEDIUM"].severity == "medium" and by_id["TEST-PAR2-NOFIX"].fixed is None
    assert [f.id for f in found.refused("high")] == ["TEST-BACKUP-UNRATED"]
    assert by_id["TEST-BACKUP-UNRATED"].line == "TEST-BACKUP-UNRATED dar-backup 1.1.11 fixed in 1.1.12 (unknown)"
    assert [f.id for f in found.refused("critical")] == []
    assert any(line.endswith("finding: TEST-RICH-MEDIUM rich 14.1.0 fixed in 14.1.1 (medium)") for line in
               vulns.summary(found, "high"))  # fmt: skip


EXCEPTION = """
[[IgnoredVulns]]
id = "TEST-DAR-1"
ignoreUntil = {until}
reason = "dar's affected code is not built"

[[IgnoredVulns]]
id = "TEST-NOTHING-9"
ignoreUntil = 2027-06-30
reason = "an old finding"
"""


def test_an_exception_passes_with_its_reason_and_one_matching_nothing_is_stale(tmp_path):
    records = [record("TEST-DAR-1", "Debian", "dar", "2.7.9-1", severity="HIGH")]
    found = scan(tmp_path, records, EXCEPTION.format(until="2027-01-31"))
    assert found.findings == () and found.refused("high") == []
    assert [(w.id, w.reason) for w in found.waived] == [("TEST-DAR-1", "dar's affected code is not built")]
    assert [w.id for w in found.stale] == ["TEST-NOTHING-9"]
    lines = vulns.summary(found, "high")
    assert "linux/amd64 exception: TEST-DAR-1 until 2027-01-31: dar's affected code is not built" in lines
    assert "linux/amd64 stale exception (matches nothing): TEST-NOTHING-9" in lines


def test_an_expired_exception_fails(tmp_path):
    records = [record("TEST-DAR-1", "Debian", "dar", "2.7.9-1", severity="HIGH")]
    with pytest.raises(StageFailure, match="the exception for TEST-DAR-1 expired on 2026-11-30"):
        scan(tmp_path, records, EXCEPTION.format(until="2026-11-30"))


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no PyPI archive", r"no .*/db/PyPI/all.zip for the image's PyPI packages"),
        ("truncated archive", r"Debian/all.zip is unreadable"),
        ("damaged record", r"Debian/all.zip is (corrupt|unreadable)"),
        ("no database", r"no .*/db/Debian/all.zip"),
    ],
)
def test_a_database_the_image_cannot_be_scanned_with_fails_closed(tmp_path, setup, message):
    if setup == "no PyPI archive":
        kwargs = {"ecosystems": ("Debian",)}
    elif setup == "no database":
        kwargs = {"ecosystems": ()}
    else:
        kwargs = {}
        database = write_db(tmp_path / "db", [record("TEST-DAR-1", "Debian", "dar", "2.7.9-1", severity="HIGH")])
        data = (database / "Debian/all.zip").read_bytes()
        if setup == "truncated archive":
            (database / "Debian/all.zip").write_bytes(data[: len(data) // 2])
        else:
            damage_first_record(database / "Debian/all.zip")
    with pytest.raises(StageFailure, match=message):
        if setup in ("truncated archive", "damaged record"):
            path = tmp_path / vulns.EXCEPTIONS_FILE
            anyio.run(vulns.scan_sbom, SBOM, "linux/amd64", tmp_path / "db", path, TODAY)
        else:
            scan(tmp_path, **kwargs)


def run_scanner(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The scanner as the scan runs it, on tmp_path/local's database links, without the run's checks."""
    (tmp_path / "image.cdx.json").write_text(SBOM)
    (tmp_path / "none.toml").write_text("")
    sbom_path, config = tmp_path / "image.cdx.json", tmp_path / "none.toml"
    argv = vulns.scanner_argv(vulns.find_scanner(), sbom_path, tmp_path / "local", config)
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def test_the_scanner_skips_a_damaged_record_which_is_why_archives_are_checked_first(tmp_path):
    """osv-scanner 2.6.0 drops a record it cannot read and scans on: the gate's own CRC check refuses."""
    database = write_db(tmp_path / "db", [record("TEST-DAR-1", "Debian", "dar", "2.7.9-1", severity="HIGH")])
    damage_first_record(database / "Debian/all.zip")
    local = tmp_path / "local/osv-scalibr"
    local.mkdir(parents=True)
    for name in ("Debian", "PyPI"):
        (local / name).symlink_to(database / name)
    done = run_scanner(tmp_path)
    assert done.returncode == 0, done.stderr
    assert vulns.parse_results(done.stdout) == (8, ())
    with pytest.raises(StageFailure, match=r"Debian/all.zip is (corrupt|unreadable)"):
        vulns.check_archives(database, ["Debian"])


def test_a_scanner_that_cannot_load_an_archive_it_needs_fails_the_scan(tmp_path):
    """The run's own check, on what the real scanner does when an archive vanished after the check."""
    write_db(tmp_path / "db", ecosystems=("Debian",))
    local = tmp_path / "local/osv-scalibr"
    local.mkdir(parents=True)
    (local / "Debian").symlink_to(tmp_path / "db/Debian")
    (tmp_path / "image.cdx.json").write_text(SBOM)
    (tmp_path / "none.toml").write_text("")
    argv = vulns.scanner_argv(
        vulns.find_scanner(), tmp_path / "image.cdx.json", tmp_path / "local", tmp_path / "none.toml"
    )
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    with pytest.raises(StageFailure, match=f"osv-scanner exited {done.returncode}: .*no offline version"):
        vulns.check_run(done.returncode, done.stderr)
    with pytest.raises(StageFailure, match="could not load the vulnerability database"):
        vulns.check_run(1, done.stderr)


def test_a_scanner_that_looks_up_fewer_packages_than_the_sbom_lists_fails_the_scan(tmp_path):
    """Two components with one purl: the scanner looks the package up once, the SBOM lists it twice."""
    document = json.loads(SBOM)
    twin = dict(document["components"][0], **{"bom-ref": "twin"})
    document["components"].append(twin)
    with pytest.raises(StageFailure, match="osv-scanner looked up 8 packages, the SBOM lists 9: the scan missed some"):
        scan(tmp_path, text=json.dumps(document))
