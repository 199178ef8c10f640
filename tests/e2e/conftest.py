"""The real engine: provisioned as the pipeline provisions it, never mocked and never skipped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from ci.core.config import DEV_IMAGE_VERSION, REPO_ROOT
from ci.core.files import exclusive
from ci.core.names import IMAGE_NAME
from ci.engines.docker import DockerEngine
from ci.engines.provision import started_engine
from ci.engines.seam import Image
from ci.release.signing import build_tools
from tests.support.docker import Docker, KeyPair, run_pipeline
from tests.support.shared import shared_dir

# `scripts/dev test` runs the tests side by side (pytest-xdist, --dist loadgroup). The tests that
# share a module's costly fixture (the foreign platform's build, two whole test runs) go to one
# worker, which makes it once. The shared release is made once for the whole run instead, by the
# first worker that asks (tests/support/shared.py): its readers are quick, but refresh and the
# second release take minutes each after it, so they may run on any worker. Those come first, so
# that the longest chains are not the last to start (xdist hands out the larger groups before them).
GROUPED_FIXTURES = ("foreign_final", "two_runs")


# First: xdist's own hook reads the xdist_group marks into the node ids it schedules by.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        group = next((name for name in GROUPED_FIXTURES if name in names), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: "released" not in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def docker() -> Docker:
    return Docker(started_engine())


@pytest.fixture(scope="session")
def final_reports(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reports of building the final image as the pipeline does (base, final, gates, SBOM)."""
    reports = tmp_path_factory.mktemp("final-reports")
    done = run_pipeline("final", "--report-dir", str(reports))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return reports


@pytest.fixture(scope="session")
def image(final_reports: Path) -> str:
    return f"{IMAGE_NAME}:{DEV_IMAGE_VERSION}"


@pytest.fixture
def volumes(docker: Docker) -> Iterator[dict[str, str]]:
    """Fresh named volumes for data, backups, backup.d and restore, removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    names = {role: f"dbtest-{tag}-{role}" for role in ("data", "backups", "backup.d", "restore")}
    for name in names.values():
        docker.ok("volume", "create", name)
    yield names
    docker("volume", "rm", "-f", *names.values())


@pytest.fixture(scope="session")
def tools(docker: Docker) -> Image:
    """The cosign tools image, built through the seam as a release builds it."""

    async def build() -> Image:
        engine = DockerEngine("tools-fixture", REPO_ROOT, docker.client)
        try:
            return await build_tools(engine)
        finally:
            await engine.close()

    return anyio.run(build)


def generate_key_pair(docker: Docker, tools: Image, where: Path, password: str) -> KeyPair:
    where.mkdir(parents=True)
    docker.ok(
        "run", "--rm", "--network", "none", "-e", f"COSIGN_PASSWORD={password}",
        "-v", f"{where}:/keys", "-w", "/keys", tools.ref, "generate-key-pair",
    )  # fmt: skip
    return KeyPair(where / "cosign.key", where / "cosign.pub", password)


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory every worker of this run sees, for what one makes and the others read."""
    return shared_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def cosign_key(docker: Docker, tools: Image, shared: Path) -> KeyPair:
    """A cosign key pair for signing releases, made by the tools image's own cosign.

    One for the whole run: the shared release one worker makes is verified with it on every worker.
    """
    where, password = shared / "cosign-release", "key-Pass-3e1f"
    with exclusive(shared / "cosign-release.lock"):
        if not where.exists():
            made = generate_key_pair(docker, tools, shared / "cosign-release.new", password)
            made.private.parent.rename(where)
    return KeyPair(where / "cosign.key", where / "cosign.pub", password)


@pytest.fixture(scope="session")
def other_key(docker: Docker, tools: Image, tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_key_pair(docker, tools, tmp_path_factory.mktemp("cosign") / "other", "")
