"""The pipeline's hash locks: they pin exactly pyproject.toml's packages, and scripts/dev refuses a changed hash."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ci.core.config import REPO_ROOT

RUNTIME = REPO_ROOT / "ci/requirements.txt"
DEV = REPO_ROOT / "ci/requirements-dev.txt"
# How pip-compile annotates a package pyproject.toml asks for itself.
DIRECT = "dar-backup-image-ci (pyproject.toml)"


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: frozenset[str]
    via: frozenset[str]


def read_lock(path: Path) -> dict[str, Pin]:
    """name → pin of a `pip-compile --generate-hashes` file: `name==version \\`, its hashes, its `# via` lines."""
    pins: dict[str, Pin] = {}
    for entry in re.split(r"\n(?=\S)", path.read_text()):
        head = re.match(r"([A-Za-z0-9._-]+)==(\S+) \\\n", entry)
        if head is None:
            assert entry.startswith("#"), f"{path.name}: not a pinned entry: {entry[:80]!r}"
            continue
        comments = [line.strip().lstrip("#").strip() for line in entry.splitlines() if line.strip().startswith("#")]
        via = {re.sub(r"^via\b", "", comment).strip() for comment in comments} - {""}
        pins[canonicalize_name(head.group(1))] = Pin(
            head.group(2), frozenset(re.findall(r"--hash=(sha256:[0-9a-f]{64})", entry)), frozenset(via)
        )
    return pins


def wanted(extras: tuple[str, ...] = ()) -> dict[str, Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *(r for extra in extras for r in project["optional-dependencies"][extra])]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


@pytest.mark.parametrize(("lock", "extras"), [(RUNTIME, ()), (DEV, ("dev",))], ids=["runtime", "dev"])
def test_a_lock_pins_exactly_what_pyproject_asks_for_within_its_ranges(lock, extras):
    pins, asked = read_lock(lock), wanted(extras)
    assert pins, lock
    assert all(pin.hashes for pin in pins.values())
    assert {name for name, pin in pins.items() if DIRECT in pin.via} == set(asked)
    outside = {name: pins[name].version for name, req in asked.items() if pins[name].version not in req.specifier}
    assert outside == {}


def test_the_dev_lock_has_the_runtime_locks_pins_and_hashes():
    runtime, dev = read_lock(RUNTIME), read_lock(DEV)
    assert {name: (dev[name].version, dev[name].hashes) for name in runtime} == {
        name: (pin.version, pin.hashes) for name, pin in runtime.items()
    }


def test_read_lock_sees_a_range_the_pin_is_outside_of(tmp_path):
    """The drift check above can fail: a pin outside pyproject's range, a package pyproject no longer asks for."""
    drifted = tmp_path / "requirements.txt"
    text = RUNTIME.read_text().replace("semver==3.", "semver==2.")
    drifted.write_text(text + "extra-thing==1.0 \\\n    --hash=sha256:" + "a" * 64 + f"\n    # via {DIRECT}\n")
    pins, asked = read_lock(drifted), wanted()
    assert pins["semver"].version not in asked["semver"].specifier
    assert {name for name, pin in pins.items() if DIRECT in pin.via} - set(asked) == {"extra-thing"}


@pytest.mark.parametrize(("command", "lock"), [("pipeline", RUNTIME), ("checks", DEV)], ids=["runtime", "dev"])
def test_scripts_dev_refuses_a_package_whose_hash_the_lock_does_not_list(tmp_path, command, lock):
    """scripts/dev as it is, beside a copy of its lock whose first package lists other hashes: pip refuses.

    Every hash of that package changes: pip takes a file that matches any one of them.
    """
    (tmp_path / "scripts").mkdir()
    (tmp_path / "ci").mkdir()
    shutil.copy(REPO_ROOT / "scripts/dev", tmp_path / "scripts/dev")
    first, rest = lock.read_text().split("\n", 1)
    hashes, rest = re.match(r"((?:\s+--hash=\S+(?: \\)?\n)+)(.*)", rest, re.S).groups()
    tampered = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, hashes)
    (tmp_path / "ci" / lock.name).write_text(f"{first}\n{tampered}{rest}")
    venv = tmp_path / "venv"
    env = {**os.environ, "DAR_BACKUP_VENV": str(venv), "DAR_BACKUP_PROGRESS_SECONDS": "0.5"}
    done = subprocess.run(
        [str(tmp_path / "scripts/dev"), command], capture_output=True, text=True, check=False, env=env, timeout=600
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "DO NOT MATCH THE HASHES" in done.stderr
    # The quiet install says it is still running, as the pipeline's long steps do.
    assert re.search(rf"^\[dev\] installing ci/{lock.name}: still running \(\d+s\)$", done.stdout, re.M), done.stdout
    assert done.stderr.strip().splitlines()[-1] == (
        f"dev: installing ci/{lock.name} failed: see pip above (a file whose sha256 the lock does not list is refused)"
    )
    assert not (venv / f".installed-{lock.name}").exists()
    package = canonicalize_name(first.split("==")[0])
    listed = subprocess.run([str(venv / "bin/pip"), "list"], capture_output=True, text=True, check=True).stdout
    assert package not in {canonicalize_name(line.split()[0]) for line in listed.splitlines()[2:]}
