"""The GitHub Release: which job publishes it, with which token, and what `gh` is asked.

GitHub cannot run here, so scripts/github-release runs as the workflow runs it, with a `gh`
that records its argv, over the files a two-platform release writes (named by the pipeline's
own functions).
"""

from __future__ import annotations

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


def release_step() -> dict:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    publishing = [
        (name, step) for name, job in jobs.items() for step in job["steps"] if "github-release" in step.get("run", "")
    ]
    assert [name for name, _ in publishing] == ["release"]
    return publishing[0][1]


def test_only_the_release_job_publishes_a_github_release_with_the_job_token():
    step = release_step()
    assert step["env"] == {"GH_TOKEN": "${{ github.token }}", "GH_REPO": "${{ github.repository }}"}
    # No condition of its own: every release that got this far (history committed) publishes.
    assert set(step) == {"name", "run", "env"}
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert jobs["release"]["permissions"]["contents"] == "write"


def gh_argv(tmp_path: Path, reports: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    gh = bin_dir / "gh"
    gh.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$GH_ARGV"\n')
    gh.chmod(0o755)
    run = release_step()["run"].replace("scripts/", f"{REPO_ROOT}/scripts/", 1)
    full = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GH_ARGV": str(tmp_path / "argv"), **env}
    return subprocess.run(["bash", "-c", run], cwd=reports.parents[1], env=full, capture_output=True, text=True)


def test_the_step_hands_gh_the_notes_sboms_and_provenance_the_release_wrote(tmp_path: Path):
    reports = tmp_path / "work/reports/release"
    reports.mkdir(parents=True)
    for name in [NOTES_FILE, *(n for p in PLATFORMS for n in (sbom_file(p), provenance_file(p))), "release.json"]:
        (reports / name).write_text("{}")
    done = gh_argv(tmp_path, reports, {"GITHUB_REF_NAME": "v1.2.0"})
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
    assert "GITHUB_REF_NAME must name" in gh_argv(tmp_path, reports, {}).stderr
    assert not (tmp_path / "argv").exists()
