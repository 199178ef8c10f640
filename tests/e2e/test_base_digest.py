"""The base on the real Docker engine: from a registry by its digest, else the engine's own image, marked local."""

from __future__ import annotations

import json
import os
import subprocess

import anyio
import pytest

from ci.core.errors import EngineError
from ci.core.labels import BASE_DIGEST, BASE_LOCAL_ID, OCI
from ci.core.platforms import host_platform
from ci.engines.docker import DockerEngine
from ci.engines.provision import ensure_base_image
from ci.engines.seam import BuildSpec
from tests.support.answering import answering, reply
from tests.support.docker import Docker, run_pipeline
from tests.support.registry import LocalRegistry, MovingTagProxy

pytestmark = pytest.mark.engine

VERSION = "0.0.0-basedigest"


def labels_of(docker: Docker, image: str) -> dict[str, str]:
    return json.loads(docker.ok("image", "inspect", "-f", "{{json .Config.Labels}}", image))


def test_a_base_no_registry_serves_is_labelled_with_its_local_image_id(docker: Docker, final_reports, image):
    # No registry is reachable here: the default ubuntu:24.04 is the engine's bootstrap of it.
    facts = json.loads((final_reports / "final.json").read_text())["run"]["platforms"][host_platform()]
    labels = labels_of(docker, image)
    local_id = docker.ok("image", "inspect", "-f", "{{.Id}}", facts["base_image"]).strip()
    assert labels[f"{OCI}.base.name"] == facts["base_image"]
    assert labels[BASE_LOCAL_ID] == facts["base_local_id"] == local_id
    assert BASE_DIGEST not in labels and facts["base_digest"] == ""


def layers(docker: Docker, image: str) -> list[str]:
    return json.loads(docker.ok("image", "inspect", "-f", "{{json .RootFS.Layers}}", image))


def push(docker: Docker, image: str, ref: str) -> None:
    copy = ["skopeo", "copy", "--dest-tls-verify=false", f"docker-daemon:{image}", f"docker://{ref}"]
    subprocess.run(copy, capture_output=True, check=True)


def test_a_base_from_a_registry_is_built_from_its_digest_even_when_the_tag_moves(
    docker: Docker, registry: LocalRegistry, tmp_path
):
    host = host_platform()
    # The base the e2e suite builds on, served by a registry on the loopback; and a newer base
    # (one layer more) that someone pushes to the same tag just after the pipeline read it.
    local = ensure_base_image(docker.client, "ubuntu:24.04", host, host)
    tag = local.rpartition(":")[2]
    newer = "dar-backup-test-base:moved"
    built = subprocess.run(
        [docker.client, "build", "-q", "-t", newer, "-"],
        input=f"FROM {local}\nRUN touch /moved-tag\n", capture_output=True, text=True, check=False,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    try:
        push(docker, local, f"{registry.address}/base:{tag}")
        push(docker, newer, f"{registry.address}/base:moved")
        moved_layer = layers(docker, newer)[-1]
    finally:
        docker("rmi", newer)
    digest = registry.skopeo("inspect", f"docker://{registry.address}/base:{tag}")["Digest"]
    moved = registry.skopeo("inspect", f"docker://{registry.address}/base:moved")["Digest"]
    proxy = MovingTagProxy(registry, "base", tag, moved)
    base = f"{proxy.address}/base:{tag}"
    reports = tmp_path / "reports"
    try:
        done = run_pipeline("final", "--base-image", base, "--image-version", VERSION, "--report-dir", str(reports))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        labels, built_layers = labels_of(docker, f"dar-backup:{VERSION}"), layers(docker, f"dar-backup:{VERSION}")
    finally:
        proxy.close()
        docker("rmi", f"dar-backup:{VERSION}")
    # The tag had moved before the build started: only FROM base@digest still names what was resolved.
    assert proxy.moved.is_set()
    assert registry.skopeo("inspect", f"docker://{registry.address}/base:{tag}")["Digest"] == moved
    assert built_layers[: len(layers(docker, local))] == layers(docker, local) and moved_layer not in built_layers
    assert f"] FROM {base}@{digest}\n" in done.stderr and moved not in done.stderr
    assert labels[f"{OCI}.base.name"] == base
    assert labels[BASE_DIGEST] == digest and BASE_LOCAL_ID not in labels
    facts = json.loads((reports / "final.json").read_text())["run"]["platforms"][host]
    assert (facts["base_image"], facts["base_digest"], facts["base_local_id"]) == (base, digest, "")


def test_a_base_registry_that_answers_with_an_error_stops_the_run_before_any_build(docker: Docker, tmp_path):
    """Only an unreachable registry lets the engine build on its own image: a 429 (any answer) stops the run."""
    host = host_platform()
    local = ensure_base_image(docker.client, "ubuntu:24.04", host, host)
    version = "0.0.0-base429"
    refusing = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
    with answering(lambda handler: reply(handler, 429, refusing)) as (address, seen):
        base = f"{address}/ubuntu:24.04"
        # The image the daemon keeps under the very name asked for: what a fallback would take.
        docker.ok("tag", local, base)
        args = ("--base-image", base, "--image-version", version, "--report-dir", str(tmp_path))
        try:
            done = run_pipeline("final", *args)
        finally:
            docker("rmi", base)
            docker("rmi", f"dar-backup:{version}")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == f"error: reading manifest {base}: HTTP 429"
    assert [(s.method, s.path) for s in seen] == [("GET", "/v2/ubuntu/manifests/24.04")]
    assert "build target" not in done.stdout + done.stderr and "local image" not in done.stdout + done.stderr


def test_a_local_base_is_built_from_its_image_id_and_an_image_not_on_it_is_refused(docker: Docker, tmp_path):
    """A local base goes by `dar-backup-local-base:id-<its image id>`; moved to another image, the build is refused.

    The base is this test's own image (the bootstrap with a label more), so that the name it moves
    is one no other test builds FROM: the end-to-end tests run side by side.
    """
    own = "dar-backup-test-base:own-id"

    async def build_twice() -> tuple[str, str, EngineError]:
        engine = DockerEngine("idtag", tmp_path, docker.client)
        base = await engine.resolve_base(own, host_platform(), None)
        spec = BuildSpec("on", {"BASE_IMAGE": base.build_from}, tag="dar-backup-test-base:on", dockerfile="Dockerfile")
        built = await engine.build(spec)
        docker.ok("tag", "dar-backup-test-base:elsewhere", base.build_from)
        try:
            with pytest.raises(EngineError) as refused:
                await engine.build(spec)
        finally:
            docker.ok("tag", str(base.local_id), base.build_from)
        return str(base.local_id), built.ref, refused.value

    # COPY, not RUN: the other image, one file imported, has no shell.
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS on\nCOPY Dockerfile /built-on-it\n")
    host = host_platform()
    bootstrap = ensure_base_image(docker.client, "ubuntu:24.04", host, host)
    labelled = subprocess.run(
        [docker.client, "build", "-q", "-t", own, "-"], input=f"FROM {bootstrap}\nLABEL test=own-id\n",
        capture_output=True, text=True, check=False, env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )  # fmt: skip
    assert labelled.returncode == 0, labelled.stderr[-2000:]
    other = tmp_path / "other.tar"
    subprocess.run(["tar", "-C", str(tmp_path), "-cf", str(other), "Dockerfile"], check=True)
    docker.ok("import", str(other), "dar-backup-test-base:elsewhere")
    own_id = docker.ok("image", "inspect", "-f", "{{.Id}}", own).strip()
    try:
        local_id, built, refused = anyio.run(build_twice)
        assert layers(docker, built)[: len(layers(docker, local_id))] == layers(docker, local_id)
    finally:
        by_id = f"dar-backup-local-base:id-{own_id.removeprefix('sha256:')}"
        docker("rmi", "dar-backup-test-base:elsewhere", "dar-backup-test-base:on", own, by_id)
    assert local_id == own_id
    assert str(refused).endswith(f"is not built on the local base {local_id} it was to be built FROM")
