"""The vulnerability gate's pure parts: ecosystems, archives, exceptions, versions, severities, the decision."""

from __future__ import annotations

import datetime as dt
import json
import zipfile

import pytest

from ci.core.errors import OutputError, StageFailure, UsageError
from ci.image import vulns
from ci.image.vulns import Finding, Scan, Waiver
from tests.support.vulndb import record, write_db

DEB = "pkg:deb/debian/dar@2.7.8-2%2Bb9?arch=amd64&distro=debian-12"
UBUNTU = "pkg:deb/ubuntu/dar@2.7.13-1?arch=amd64&distro=ubuntu-24.04"
PYPI = "pkg:pypi/dar-backup@1.1.11"


def sbom(*purls: str) -> dict:
    return {"components": [{"name": p.split("/")[-1].split("@")[0], "purl": p} for p in purls]}


def test_every_component_is_looked_up_in_its_ecosystem_and_any_other_purl_refuses():
    assert vulns.needed_ecosystems(sbom(DEB, DEB, UBUNTU, PYPI)) == {"Debian": 2, "Ubuntu": 1, "PyPI": 1}
    with pytest.raises(StageFailure, match="no OSV ecosystem for the SBOM component pkg:generic/x@1"):
        vulns.needed_ecosystems(sbom(DEB, "pkg:generic/x@1"))
    with pytest.raises(StageFailure, match="has no purl"):
        vulns.needed_ecosystems({"components": [{"name": "x"}]})
    with pytest.raises(StageFailure, match="lists no packages"):
        vulns.needed_ecosystems({"components": []})


def test_archives_are_checked_whole_and_a_missing_or_corrupt_one_refuses(tmp_path):
    db = write_db(tmp_path / "db")
    archives = vulns.check_archives(db, ["PyPI", "Debian"])
    assert [a.ecosystem for a in archives] == ["Debian", "PyPI"] and all(len(a.sha256) == 64 for a in archives)
    with pytest.raises(StageFailure, match=r"no .*/Ubuntu/all.zip for the image's Ubuntu packages"):
        vulns.check_archives(db, ["Ubuntu"])
    (db / "PyPI/all.zip").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(StageFailure, match=r"PyPI/all.zip is unreadable"):
        vulns.check_archives(db, ["PyPI"])
    # A zip whose member's bytes changed: its CRC no longer matches.
    data = bytearray((db / "Debian/all.zip").read_bytes())
    offset = data.index(b"PK\x03\x04") + 30 + len("TEST-UNRELATED-Debian.json") + 2
    data[offset] ^= 0xFF
    (db / "Debian/all.zip").write_bytes(bytes(data))
    with pytest.raises(StageFailure, match=r"Debian/all.zip is (corrupt|unreadable)"):
        vulns.check_archives(db, ["Debian"])


def test_the_recorded_download_date_names_the_archive(tmp_path):
    db = write_db(tmp_path / "db")
    (db / vulns.MANIFEST).write_text(json.dumps({"PyPI": {"date": "2026-11-30T04:00:00Z"}}))
    (pypi,) = vulns.check_archives(db, ["PyPI"])
    assert pypi.date == "2026-11-30T04:00:00Z"


EXCEPTIONS = """
[[IgnoredVulns]]
id = "DEBIAN-CVE-2026-1"
ignoreUntil = 2027-01-31
reason = "  dar's network code is not built  "
"""


def test_exceptions_read_from_the_scanner_s_own_config():
    (waiver,) = vulns.parse_waivers(EXCEPTIONS, "osv-scanner.toml")
    assert waiver == Waiver("DEBIAN-CVE-2026-1", dt.date(2027, 1, 31), "dar's network code is not built")
    assert vulns.expired([waiver], dt.date(2027, 1, 30)) == []
    assert vulns.expired([waiver], dt.date(2027, 1, 31)) == [
        "the exception for DEBIAN-CVE-2026-1 expired on 2027-01-31 (dar's network code is not built)"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[IgnoredVulns]]\nid = 'X'\nreason = 'r'\n", "must have exactly id, ignoreUntil and reason"),
        (
            "[[IgnoredVulns]]\nid = 'X'\nignoreUntil = 2027-01-01\nreason = ' '\n",
            r"IgnoredVulns\[0\] \(X\) gives no reason",
        ),
        ("[[IgnoredVulns]]\nid = 'X'\nignoreUntil = 'soon'\nreason = 'r'\n", "ignoreUntil a date"),
        ("[[IgnoredVulns]\n", "osv-scanner.toml: "),
        (EXCEPTIONS + EXCEPTIONS, "an id is listed twice"),
    ],
)
def test_a_malformed_exception_cannot_start_a_run(text, message):
    with pytest.raises(UsageError, match=message):
        vulns.parse_waivers(text, "osv-scanner.toml")


def test_an_expired_exception_refuses_the_scan(tmp_path):
    path = tmp_path / "osv-scanner.toml"
    path.write_text(EXCEPTIONS)
    assert len(vulns.read_waivers(path, dt.date(2027, 1, 1))) == 1
    with pytest.raises(StageFailure, match="the exception for DEBIAN-CVE-2026-1 expired on 2027-01-31"):
        vulns.read_waivers(path, dt.date(2027, 3, 1))
    assert vulns.read_waivers(tmp_path / "none.toml", dt.date(2027, 3, 1)) == ()


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ("2.7.8-2+b9", "2.7.8-2", 1),
        ("2.7.8-2+b9", "2.7.9-1", -1),
        ("1:2.38.1-5", "2.39-1", 1),
        ("3.0.20-1~deb12u2", "3.0.20-1", -1),
        ("1.0~rc1", "1.0", -1),
        ("5.2.15-2+b13", "5.2.15-2+b13", 0),
        ("0~20171227-0.3", "0~20171227-0.3+deb12u1", -1),
        ("1.2a", "1.2+", -1),
        ("1:2.0:1-1", "1:2.0-1", 1),
    ],
)
def test_debian_versions_compare_as_dpkg_does(a, b, order):
    assert vulns.debian_compare(a, b) == order
    assert vulns.debian_compare(b, a) == -order


def test_the_fixed_version_is_the_lowest_fix_above_the_installed_one():
    two_ranges = record("R", "Debian", "dar", "2.7.0-1")
    two_ranges["affected"][0]["ranges"].append(
        {"type": "ECOSYSTEM", "events": [{"introduced": "2.7.8-1"}, {"fixed": "2.7.8-2+b10"}]}
    )
    two_ranges["affected"][0]["ranges"][0]["events"].append({"fixed": "2.7.9-1"})
    assert vulns.fixed_version(two_ranges, "dar", "Debian", "2.7.8-2+b9") == "2.7.8-2+b10"
    assert vulns.fixed_version(record("R", "Debian", "dar", "2.7.8-2"), "dar", "Debian", "2.7.8-2+b9") is None
    assert vulns.fixed_version(record("R", "Debian", "dar", None), "dar", "Debian", "2.7.8-2+b9") is None
    assert vulns.fixed_version(record("R", "Debian", "par2", "9"), "dar", "Debian", "2.7.8") is None
    assert vulns.fixed_version(record("R", "PyPI", "rich", "15.0.10"), "rich", "PyPI", "15.0.9") == "15.0.10"
    assert vulns.fixed_version(record("R", "PyPI", "rich", "15.0.9"), "rich", "PyPI", "15.0.10") is None


def test_severity_is_the_highest_the_record_or_the_scanner_s_cvss_score_names():
    assert vulns.severity(record("R", "Debian", "dar", "1", severity="MODERATE"), "") == "medium"
    assert vulns.severity(record("R", "Debian", "dar", "1", severity="low"), "7.5") == "high"
    assert vulns.severity(record("R", "Debian", "dar", "1"), "9.8") == "critical"
    assert vulns.severity(record("R", "Debian", "dar", "1"), "") == "unknown"
    ubuntu = {**record("R", "Ubuntu", "dar", "1"), "severity": [{"type": "Ubuntu", "score": "negligible"}]}
    assert vulns.severity(ubuntu, "") == "low"
    assert vulns.severity(record("R", "Debian", "dar", "1", severity="whatever"), "n/a") == "unknown"


def finding(ident: str, severity: str, fixed: str | None = "2") -> Finding:
    return Finding(ident, "dar", "Debian", "1", fixed, severity)


def test_the_gate_refuses_fixable_findings_at_or_above_the_threshold_and_unknown_counts_as_high():
    found = [
        finding("A", "critical"),
        finding("B", "high"),
        finding("C", "medium"),
        finding("D", "unknown"),
        finding("E", "critical", fixed=None),
    ]
    assert [f.id for f in vulns.refused(found, "high")] == ["A", "B", "D"]
    assert [f.id for f in vulns.refused(found, "critical")] == ["A"]
    assert [f.id for f in vulns.refused(found, "low")] == ["A", "B", "C", "D"]


def scan(findings=(), waived=(), stale=()) -> Scan:
    archives = (vulns.Archive("Debian", "a" * 64, "2026-11-30T00:00:00Z"),)
    return Scan("linux/amd64", 137, tuple(findings), waived, stale, archives, ("osv", "scan"), "t0", "t1")


def test_the_refusal_names_each_finding_on_its_own_line():
    assert vulns.refusal([scan([finding("C", "medium")])], "high") is None
    message = vulns.refusal([scan([finding("A", "high"), finding("C", "medium")])], "high")
    assert message == "vulnerability gate: 1 fixable at or above high\nlinux/amd64: A dar 1 fixed in 2 (high)"


def test_the_predicate_has_every_field_cosign_s_vuln_structure_prints():
    waiver = Waiver("W", dt.date(2027, 1, 1), "why")
    document = vulns.predicate(scan([finding("A", "low")], waived=(waiver,)), "high")
    assert set(document) == {"invocation", "scanner", "metadata"}
    assert set(document["invocation"]) == {"parameters", "uri", "event_id", "builder.id"}
    assert set(document["scanner"]) == {"uri", "version", "db", "result"}
    assert set(document["scanner"]["db"]) == {"uri", "version"}
    assert document["metadata"] == {"scanStartedOn": "t0", "scanFinishedOn": "t1"}
    assert document["scanner"]["uri"] == "pkg:golang/github.com/google/osv-scanner/v2@v2.6.0"
    assert document["scanner"]["db"]["version"] == "Debian 2026-11-30T00:00:00Z sha256:" + "a" * 64
    assert vulns.predicate_counts(document) == {"packages": 137, "findings": 1, "fixable": 1, "exceptions": 1}
    result = document["scanner"]["result"]
    assert result["exceptions"] == [{"id": "W", "until": "2027-01-01", "reason": "why"}] and result["refused"] == []


SCANNER_JSON = {
    "results": [
        {
            "source": {"path": "/tmp/image.cdx.json", "type": "sbom"},
            "packages": [
                {"package": {"name": "bash", "version": "5.2.15-2+b13", "ecosystem": "Debian:12"}},
                {
                    "package": {"name": "dar", "version": "2.7.8-2+b9", "ecosystem": "Debian:12"},
                    "vulnerabilities": [record("TEST-DAR-1", "Debian", "dar", "2.7.9-1", severity="HIGH")],
                    "groups": [{"ids": ["TEST-DAR-1"], "aliases": ["TEST-DAR-1"], "max_severity": ""}],
                },
                {
                    "package": {"name": "rich", "version": "15.0.0", "ecosystem": "PyPI"},
                    "vulnerabilities": [record("TEST-RICH-1", "PyPI", "rich", None)],
                    "groups": [{"ids": ["TEST-RICH-1"], "aliases": ["TEST-RICH-1"], "max_severity": "4.3"}],
                },
            ],
        }
    ]
}


def test_the_scanner_s_json_reads_as_packages_and_findings():
    packages, findings = vulns.parse_results(json.dumps(SCANNER_JSON))
    assert packages == 3
    assert findings == (
        Finding("TEST-DAR-1", "dar", "Debian", "2.7.8-2+b9", "2.7.9-1", "high"),
        Finding("TEST-RICH-1", "rich", "PyPI", "15.0.0", None, "medium"),
    )
    with pytest.raises(OutputError, match="unreadable result"):
        vulns.parse_results('{"results": [{"source": {}}]}')


def test_unused_exceptions_are_read_from_the_scanner_s_warning():
    stderr = "Loaded Debian local db\n/tmp/x/osv-scanner.toml has unused ignores:\n - A\n - B\nFiltered 1\n - C\n"
    assert vulns.unused_ids(stderr) == {"A", "B"}
    assert vulns.scanner_version("osv-scanner version: 2.6.0\nosv-scalibr version: 0.5.2\n") == "2.6.0"


def test_the_test_database_writer_makes_the_bucket_layout(tmp_path):
    db = write_db(tmp_path, [record("X", "PyPI", "rich", "1")])
    with zipfile.ZipFile(db / "PyPI/all.zip") as archive:
        assert archive.namelist() == ["X.json"]
    with zipfile.ZipFile(db / "Debian/all.zip") as archive:
        assert archive.namelist() == ["TEST-UNRELATED-Debian.json"]
