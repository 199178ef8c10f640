"""The workflow's GitHub Release step: what `gh` is asked, with which token, in which job.

GitHub cannot run here, so the step's own command runs under bash with a `gh` that records
its argv, over the files a two-platform release writes (named by the pipeline's own functions).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from ci.core.config import REPO_ROOT
from ci.image.sbom import sbom_file
from ci.release.notes import NOTES_FILE
from ci.release.provenance import provenance_file

WORKFLOW = REPO_ROOT / ".github/workflows/ci.yml"
PLATFORMS = ("linux/amd64", "linux/arm64")


def jobs(text: str) -> dict[str, list[str]]:
    """Each job's lines, by job id (the workflow's two-space-indented keys under `jobs:`)."""
    body = text.split("\njobs:\n", 1)[1].splitlines()
    found: dict[str, list[str]] = {}
    for line in body:
        if match := re.fullmatch(r"  ([\w-]+):", line):
            found[match.group(1)] = []
        elif found:
            found[list(found)[-1]].append(line)
    return found


def step(lines: list[str], name: str) -> dict[str, object]:
    """The named step's `run` (a folded `>-` block joined as YAML joins it) and its `env`."""
    start = lines.index(f"      - name: {name}")
    block = []
    for line in lines[start + 1 :]:
        if line.startswith("      - "):
            break
        block.append(line)

    def nested(key: str) -> list[str]:
        """The lines indented under `key` (up to the step's next key)."""
        lines = block[block.index(f"        {key}") + 1 :]
        end = next((i for i, line in enumerate(lines) if not line.startswith("          ")), len(lines))
        return [line.strip() for line in lines[:end]]

    env = dict(line.split(": ", 1) for line in nested("env:"))
    keys = [line.strip().split(":", 1)[0] for line in block if re.match(r"        \w", line)]
    return {"run": " ".join(nested("run: >-")), "env": env, "keys": keys}


def test_only_the_release_job_publishes_a_github_release_with_the_job_token():
    workflow = jobs(WORKFLOW.read_text())
    publishing = [job for job, lines in workflow.items() if any("gh release" in line for line in lines)]
    assert publishing == ["release"]
    release = step(workflow["release"], "GitHub Release")
    assert release["env"] == {"GH_TOKEN": "${{ github.token }}", "GH_REPO": "${{ github.repository }}"}
    # No condition of its own: every release that got this far (history committed) publishes.
    assert release["keys"] == ["run", "env"]
    # The job may create it (contents: write) and runs only for v* tags.
    assert "      contents: write # the build history commit, pushed by scripts/commit-history" in workflow["release"]
    # Nothing from the event is pasted into the command: names arrive through the environment.
    assert "${{" not in str(release["run"])


def test_the_step_hands_gh_the_notes_sboms_and_provenance_the_release_wrote(tmp_path: Path):
    reports = tmp_path / "reports/release"
    reports.mkdir(parents=True)
    written = [NOTES_FILE, *(name for p in PLATFORMS for name in (sbom_file(p), provenance_file(p)))]
    for name in [*written, "release.json", "junit.xml"]:
        (reports / name).write_text("{}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$GH_ARGV"\n')
    gh.chmod(0o755)
    release = step(jobs(WORKFLOW.read_text())["release"], "GitHub Release")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_REF_NAME": "v1.2.0", "GH_ARGV": str(tmp_path / "argv")}
    subprocess.run(["bash", "-e", "-c", str(release["run"])], cwd=tmp_path, env=env, check=True)
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv == [
        "release", "create", "v1.2.0", "--verify-tag", "--title", "v1.2.0",
        "--notes-file", f"reports/release/{NOTES_FILE}",
        *(f"reports/release/{sbom_file(p)}" for p in PLATFORMS),
        *(f"reports/release/{provenance_file(p)}" for p in PLATFORMS),
    ]  # fmt: skip
