"""`python ci/main.py test` on the real Docker engine: two runs at once, labels, reports, cleanup."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import anyio
import pytest

from ci.core.config import REPO_ROOT, build_config
from ci.core.errors import StageFailure
from ci.core.labels import REQUIRED_OCI_KEYS, TOOL_LABELS
from ci.core.platforms import host_platform
from ci.core.report import Report
from ci.engines.docker import RUN_LABEL, DockerEngine
from ci.engines.seam import Image
from ci.stages.scenario import Level, Scenario
from tests.support.docker import Docker
from tests.support.vulndb import record, write_db

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def two_runs(
    docker: Docker, image: str, tmp_path_factory: pytest.TempPathFactory
) -> list[tuple[int, str, dict, ET.Element]]:
    """Two `test` runs started at once, each with its own report directory: exit code, output, JSON and JUnit.

    The second is given a vulnerability database with a finding a release would refuse, and a
    GitHub step summary: `test` scans and reports, and passes.
    """
    dirs = [tmp_path_factory.mktemp(f"run{i}") for i in (1, 2)]
    db = write_db(
        tmp_path_factory.mktemp("vuln-db"), [record("TEST-DAR-1", "Debian", "dar", "2.7.9-1", severity="HIGH")]
    )
    scanning = ["--vuln-db", str(db)]
    summary = {"GITHUB_STEP_SUMMARY": str(summary_file(tmp_path_factory))}
    procs = [
        subprocess.Popen(
            [sys.executable, "ci/main.py", "--engine", "docker", "test", "--report-dir", str(d), *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env},
        )
        for d, args, env in zip(dirs, ([], scanning), ({}, summary), strict=True)
    ]
    results = []
    for proc, report_dir in zip(procs, dirs, strict=True):
        output, _ = proc.communicate(timeout=1200)
        report = json.loads((report_dir / "test.json").read_text())
        results.append((proc.returncode, output, report, ET.parse(report_dir / "test.junit.xml").getroot()))
    return results


def test_both_concurrent_runs_pass(two_runs):
    for code, output, report, _ in two_runs:
        assert code == 0, output[-4000:]
        assert report["outcome"] == "passed"
    assert two_runs[0][2]["run"]["run_id"] != two_runs[1][2]["run"]["run_id"]


def test_test_says_in_one_line_it_did_not_scan_or_scans_and_only_reports(two_runs, tmp_path_factory):
    _, output, report, junit = two_runs[0]
    skipped = [(s["name"], s["status"], s["message"]) for s in report["steps"] if s["stage"] == "vulnerabilities"]
    assert skipped == [("scan the SBOM with osv-scanner, offline", "skipped", "not scanned: no --vuln-db given")]
    said = [line for line in output.splitlines() if line.startswith("[vulnerabilities")]
    assert said == [
        f"[vulnerabilities {host_platform()}] scan the SBOM with osv-scanner, offline: not scanned: no --vuln-db given"
    ]
    code, output, report, junit = two_runs[1]
    assert code == 0 and report["outcome"] == "passed"
    scanned = [(s["name"], s["status"]) for s in report["steps"] if s["stage"] == "vulnerabilities"]
    assert scanned == [
        ("scan the SBOM with osv-scanner, offline", "passed"),
        ("vulnerability gate: nothing fixable at or above high", "warning"),
    ]
    finding = f"{host_platform()} finding: TEST-DAR-1 dar 2.7.8-2+b9 fixed in 2.7.9-1 (high)"
    assert finding in report["notes"]
    assert any(n.startswith(f"{host_platform()} vulnerability scan: ") for n in report["notes"])
    # JSON (above), JUnit and the Markdown summary say it, and the scan's predicate is in the reports.
    gate = [c for c in junit.iter("testcase") if c.get("name").startswith("vulnerability gate")]
    assert "TEST-DAR-1 dar 2.7.8-2+b9" in gate[0].find("system-out").text
    assert f"- {finding}" in summary_file(tmp_path_factory).read_text()


def summary_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the second run writes its GitHub step summary."""
    return tmp_path_factory.getbasetemp() / "run2-summary.md"


def test_report_has_every_level_and_check(two_runs):
    names = [step["name"] for step in two_runs[0][2]["steps"]]
    for level in ("FULL", "DIFF", "INCR"):
        assert (
            f"{level}: restore {' + '.join(['FULL', 'DIFF', 'INCR'][: ['FULL', 'DIFF', 'INCR'].index(level) + 1])}"
            in names
        )
        assert f"{level}: point-in-time restore (manager --when)" in names
    assert "bitrot, fragmented: par2 repair restores the exact bytes" in names
    # A step that judges what an earlier step's container printed (a batch
    # of probes or bitrot proofs) may take less than the millisecond the report rounds to; the
    # steps that back up, restore or change the data each start containers of their own.
    steps = two_runs[0][2]["steps"]
    starts_containers = [s for s in steps if re.search(r"dar-backup -[FDI] exits 0|: restore |change data", s["name"])]
    assert len(starts_containers) == 9 and all(step["seconds"] > 0 for step in starts_containers)


# What a JUnit test case holds for each step status.
JUNIT_CHILDREN = {"passed": [], "failed": ["failure"], "skipped": ["skipped"], "warning": ["system-out"]}


def test_junit_report_says_what_the_json_report_says(two_runs):
    for _, _, report, junit in two_runs:
        assert (junit.tag, junit.get("name")) == ("testsuites", "dar-backup-image test")
        steps = report["steps"]
        wheres = [f"{s['stage']} {s['platform']}" if s["platform"] else s["stage"] for s in steps]
        # One suite per stage (and platform), in the order the stages first ran; one case per step.
        order = list(dict.fromkeys(wheres))
        expected = sorted(
            (
                (where, f"test.{s['stage']}", s["name"], f"{s['seconds']:.3f}", JUNIT_CHILDREN[s["status"]])
                for where, s in zip(wheres, steps, strict=True)
            ),
            key=lambda case: order.index(case[0]),
        )
        suites = junit.findall("testsuite")
        cases = [
            (suite.get("name"), case.get("classname"), case.get("name"), case.get("time"), [c.tag for c in case])
            for suite in suites
            for case in suite.findall("testcase")
        ]
        assert cases == expected
        assert [(s.get("name"), s.get("tests"), s.get("failures")) for s in suites] == [
            (where, str(wheres.count(where)), "0") for where in order
        ]


def test_nothing_of_either_run_remains(docker: Docker, two_runs):
    for _, _, report, _ in two_runs:
        label = f"label={RUN_LABEL}={report['run']['run_id']}"
        assert docker.ok("ps", "-aq", "--filter", label).strip() == ""
        assert docker.ok("volume", "ls", "-q", "--filter", label).strip() == ""


def test_final_image_carries_the_declared_labels(docker: Docker, two_runs):
    report = two_runs[0][2]
    (platform,) = report["run"]["platforms"]
    assert platform == host_platform()
    facts = report["run"]["platforms"][platform]
    labels = json.loads(docker.ok("image", "inspect", "-f", "{{json .Config.Labels}}", facts["image"]))
    oci = "org.opencontainers.image"
    assert labels[f"{oci}.version"] == report["run"]["image_version"]
    assert labels[f"{oci}.revision"] == report["run"]["revision"]
    assert labels[f"{oci}.base.name"] == facts["base_image"]
    assert labels[f"{oci}.licenses"] == "GPL-3.0-or-later"
    for tool, key in TOOL_LABELS.items():
        assert labels[key] == facts[f"{tool}_version"]
    assert {step["platform"] for step in report["steps"]} == {platform}
    assert all(labels.get(f"{oci}.{key}") for key in REQUIRED_OCI_KEYS)


def test_bad_version_is_refused_before_any_build(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "ci/main.py",
            "--engine",
            "docker",
            "test",
            "--image-version",
            "latest",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: image version 'latest' is not a version; give a release such as 1.2.3"
    assert list(tmp_path.iterdir()) == []


class TamperedSnapshot(Scenario):
    """A wrong expectation: the data changes after its snapshot was taken."""

    async def after_snapshot(self, level: Level):
        if level.name == "DIFF":
            await self.user(["sh", "-c", "echo tampered >> '/data/with space.txt'"])


class NoArchive(Scenario):
    """A dar-backup run that leaves no archive behind."""

    async def invoke_backup(self, level: Level):
        result = await super().invoke_backup(level)
        await self.user(["sh", "-c", "rm -f /backups/*_FULL_*.dar*"])
        return result


# Run in the restore's directory: what a restore that loses metadata would leave. mtimes are put back
# so that only the metadata under test differs.
LOSSY_RESTORE = """import os, sys
os.chdir(sys.argv[1])
os.removexattr("meta/xattrs.txt", "user.comment")
os.removexattr("meta/acl.txt", "system.posix_acl_access")
stat = os.stat("sparse.img")
data = open("sparse.img", "rb").read()
os.remove("sparse.img")
with open("sparse.img", "wb") as filled:
    filled.write(data)
os.chmod("sparse.img", stat.st_mode)
for path, st in (("sparse.img", stat), ("meta/acl.txt", os.stat("meta/acl.txt"))):
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
"""


class LossyRestore(Scenario):
    """A restore that drops an xattr, loses an ACL and writes a sparse file's holes out."""

    async def restore(self, label: str, chain):
        target = await super().restore(label, chain)
        if (label, list(chain)) == ("chain", [self.archives["FULL"]]):
            await self.user(["python3", "-c", LOSSY_RESTORE, f"{target}/data"])
        return target


def run_scenario(docker: Docker, image: str, scenario_class: type[Scenario]) -> tuple[str, Report]:
    config = build_config(
        image_version=None,
        dar_backup_version=None,
        base_image=None,
        repo=None,
        dry_run=False,
        report_dir=Path("unused"),
        env={},
    )
    report = Report("test", "docker")

    async def go() -> None:
        engine = DockerEngine.open(config.run_id, REPO_ROOT)
        try:
            image_id = docker.ok("image", "inspect", "-f", "{{.Id}}", image).strip()
            await scenario_class(engine, Image(image_id, image), report).run()
        finally:
            await engine.close()

    with pytest.raises(StageFailure) as failure:
        anyio.run(go)
    label = f"label={RUN_LABEL}={config.run_id}"
    assert docker.ok("volume", "ls", "-q", "--filter", label).strip() == ""
    return str(failure.value), report


def test_a_change_after_the_snapshot_fails_the_stage_naming_the_path(docker: Docker, image: str):
    message, report = run_scenario(docker, image, TamperedSnapshot)
    assert "'with space.txt': sha256 expected" in message
    assert report.failed[0].name == "DIFF: restore FULL + DIFF"


def test_a_run_that_produced_no_archive_fails_the_stage(docker: Docker, image: str):
    message, report = run_scenario(docker, image, NoArchive)
    assert message.startswith("no archive scenario_FULL_")
    assert report.failed[0].name == "FULL: archive named in local time, one par2 set per slice"


def test_a_restore_that_loses_xattrs_acls_or_holes_fails_the_stage(docker: Docker, image: str):
    message, report = run_scenario(docker, image, LossyRestore)
    assert report.failed[0].name == "FULL: restore FULL"
    assert "'meta/xattrs.txt': xattrs expected 'user.binary=" in message
    assert (
        "'meta/acl.txt': acl expected 'user::rw-,user:1001:r--,group::r--,group:1002:rw-,mask::rw-,other::r--', got ''"
        in message
    )
    # Written out, the file holds all its 131072 blocks, and a few more for its extents on a
    # fragmented file system (as when the tests run side by side).
    written = re.search(r"'sparse\.img': blocks expected '6144' \(sparse, at most 6886\), got '(\d+)'", message)
    assert written and 131072 <= int(written.group(1)) < 131072 + 6144, message


def test_ctrl_c_removes_everything_and_exits_130(docker: Docker, image: str, tmp_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "ci/main.py", "--engine", "docker", "test", "--report-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    for line in proc.stdout:
        if line.startswith(f"[test {host_platform()}] FULL: dar-backup -F"):
            break
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert stderr.strip().splitlines()[-1] == "error: interrupted (Ctrl-C); volumes and containers removed"
    run_id = json.loads((tmp_path / "test.json").read_text())["run"]["run_id"]
    label = f"label={RUN_LABEL}={run_id}"
    assert docker.ok("ps", "-aq", "--filter", label).strip() == ""
    assert docker.ok("volume", "ls", "-q", "--filter", label).strip() == ""


# A bug in the pipeline's own code half-way through the story: `listing.unshown_changes` raises.
BUGGY_RUN = """
import sys
from ci.stages import listing

def broken(*args, **kwargs):
    raise KeyError("a bug in the pipeline")

listing.unshown_changes = broken
from ci.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_bug_in_the_pipeline_exits_3_after_the_reports_and_removes_everything(docker: Docker, image: str, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", BUGGY_RUN, "--engine", "docker", "test", "--report-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    err = done.stderr.strip().splitlines()
    assert err[-1] == "error: internal error: KeyError: 'a bug in the pipeline'"
    assert any(line.startswith("Traceback") for line in err)
    report = json.loads((tmp_path / "test.json").read_text())
    failed = [step["name"] for step in report["steps"] if step["status"] == "failed"]
    assert report["outcome"] == "failed" and failed == ["FULL: --list and --list-contents show the changes"]
    label = f"label={RUN_LABEL}={report['run']['run_id']}"
    assert docker.ok("ps", "-aq", "--filter", label).strip() == ""
    assert docker.ok("volume", "ls", "-q", "--filter", label).strip() == ""
