"""The GitHub Release: which jobs publish it, with which token, and what `gh` is asked.

GitHub cannot run here, so scripts/github-release runs as the workflow runs it, with a `gh`
that records its argv, over the files a two-platform release writes (named by the pipeline's
own functions).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from ci.core.config import REPO_ROOT
from ci.image.sbom import sbom_file
from ci.release.notes import NOTES_FILE
from ci.release.provenance import provenance_file

WORKFLOW = REPO_ROOT / ".github/workflows/ci.yml"
PLATFORMS = ("linux/amd64", "linux/arm64")


def publishing_steps() -> dict[str, dict]:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    return {
        name: step for name, job in jobs.items() for step in job["steps"] if "github-release" in step.get("run", "")
    }


def release_step(job: str = "release") -> dict:
    return publishing_steps()[job]


def test_only_the_release_and_refresh_jobs_publish_a_github_release_with_the_job_token():
    steps = publishing_steps()
    assert sorted(steps) == ["refresh", "release"]
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    for name, step in steps.items():
        assert step["env"] == {"GH_TOKEN": "${{ github.token }}", "GH_REPO": "${{ github.repository }}"}
        # No condition of its own: every release that got this far (history committed) publishes.
        assert set(step) == {"name", "run", "env"}
        assert jobs[name]["permissions"]["contents"] == "write"
    # Refresh publishes only what it released, after tagging the commit that records it.
    assert steps["refresh"]["run"] == "scripts/github-release --if-released reports/refresh"
    refresh = [step.get("run", "") for step in jobs["refresh"]["steps"]]
    assert refresh.index("scripts/commit-history --if-changed --tag") < refresh.index(steps["refresh"]["run"])


def gh_argv(
    tmp_path: Path, reports: Path, env: dict[str, str], job: str = "release", released: str = "1.2.0"
) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    gh = bin_dir / "gh"
    gh.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$GH_ARGV"\n')
    gh.chmod(0o755)
    run = release_step(job)["run"].replace("scripts/", f"{REPO_ROOT}/scripts/", 1)
    work = reports.parents[1]
    (work / "doc").mkdir(exist_ok=True)
    (work / "doc/build-history.json").write_text(json.dumps({"format": 4, "builds": [{"tag": released}]}))
    full = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GH_ARGV": str(tmp_path / "argv"), **env}
    return subprocess.run(["bash", "-c", run], cwd=work, env=full, capture_output=True, text=True)


def test_the_step_hands_gh_the_notes_sboms_and_provenance_the_release_wrote(tmp_path: Path):
    reports = tmp_path / "work/reports/release"
    reports.mkdir(parents=True)
    for name in [NOTES_FILE, *(n for p in PLATFORMS for n in (sbom_file(p), provenance_file(p))), "release.json"]:
        (reports / name).write_text("{}")
    done = gh_argv(tmp_path, reports, {"GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "v1.2.0"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "argv").read_text().splitlines() == [
        "release", "create", "v1.2.0", "--verify-tag", "--title", "v1.2.0",
        "--notes-file", f"reports/release/{NOTES_FILE}",
        *(f"reports/release/{sbom_file(p)}" for p in PLATFORMS),
        *(f"reports/release/{provenance_file(p)}" for p in PLATFORMS),
    ]  # fmt: skip


def test_without_notes_or_a_tag_nothing_is_published(tmp_path: Path):
    reports = tmp_path / "work/reports/release"
    reports.mkdir(parents=True)
    done = gh_argv(tmp_path, reports, {"GITHUB_REF_NAME": "v1.2.0"})
    assert done.returncode == 1 and "release-notes.md is missing" in done.stderr
    (reports / NOTES_FILE).write_text("# notes\n")
    assert "no SBOM or provenance" in gh_argv(tmp_path, reports, {"GITHUB_REF_NAME": "v1.2.0"}).stderr
    (reports / sbom_file("linux/amd64")).write_text("{}")
    other = gh_argv(tmp_path, reports, {"GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "v9.9.9"})
    assert (other.returncode, other.stderr) == (
        1,
        "github-release: this run is for tag v9.9.9 but the history's last release is 1.2.0\n",
    )
    assert not (tmp_path / "argv").exists()


def test_a_refresh_publishes_what_it_released_under_the_tag_commit_history_made(tmp_path: Path):
    reports = tmp_path / "work/reports/refresh"
    reports.mkdir(parents=True)
    nothing = gh_argv(tmp_path, reports, {"GITHUB_REF_TYPE": "branch", "GITHUB_REF_NAME": "main"}, "refresh")
    assert (nothing.returncode, nothing.stderr) == (0, "")
    assert (
        nothing.stdout
        == "github-release: no release notes in reports/refresh: nothing was released, nothing to publish\n"
    )
    assert not (tmp_path / "argv").exists()
    for name in [NOTES_FILE, sbom_file("linux/amd64"), provenance_file("linux/amd64")]:
        (reports / name).write_text("{}")
    done = gh_argv(tmp_path, reports, {"GITHUB_REF_TYPE": "branch", "GITHUB_REF_NAME": "main"}, "refresh", "1.2.1")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "argv").read_text().splitlines()[:6] == [
        "release", "create", "v1.2.1", "--verify-tag", "--title", "v1.2.1",
    ]  # fmt: skip
