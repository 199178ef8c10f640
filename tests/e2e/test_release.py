"""`python ci/main.py release` against a real registry: what lands, what is refused, what stays put."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import semver

from ci.core.config import REPO_ROOT, RunConfig
from ci.core.errors import SigningError, StageFailure
from ci.core.files import exclusive
from ci.core.labels import BASE_DIGEST, BASE_LOCAL_ID, REQUIRED_OCI_KEYS
from ci.core.report import Report
from ci.core.versions import TOOLS, locked_dar_backup_version, tool_version
from ci.engines.docker import DockerEngine
from ci.engines.seam import BuildSpec, Image
from ci.image.sbom import sbom_file
from ci.oci.registry import Registry
from ci.pipeline import build_platform, pipeline
from ci.release import history, provenance, signing
from ci.release.plan import Plan, preflight
from ci.release.publish import release as publish
from ci.release.signing import Cosign, attested_predicates, signing_identity
from ci.stages import vulnscan
from tests.support.docker import Docker, KeyPair
from tests.support.registry import LocalRegistry, PagingProxy, RelayProxy
from tests.support.releasing import HOST, NAME, clean_db, cosign, maintainer_env, release
from tests.support.samples import HISTORY_ENTRY, release_config
from tests.support.shared import SharedRegistry
from tests.support.vulndb import record, write_db

pytestmark = [pytest.mark.engine, pytest.mark.registry]
HOST_SBOM = f"reports/{sbom_file(HOST)}"


@pytest.fixture(autouse=True)
def signing_key(cosign_key: KeyPair, monkeypatch) -> KeyPair:
    """Every release here signs with the session's key pair, as a maintainer's would."""
    for name, value in cosign_key.env().items():
        monkeypatch.setenv(name, value)
    return cosign_key


def history_bytes(checkout: Path) -> bytes:
    return (checkout / "doc/build-history.json").read_bytes()


@dataclass(frozen=True)
class Released:
    """A successful, signed release of the host's platform: its registry, its clone and its version."""

    registry: LocalRegistry
    checkout: Path
    version: str

    @property
    def ref(self) -> str:
        return f"{self.registry.address}/{NAME}:{self.version}"


SHARED_VERSION = "1.2.0"
SHARED_RECORDS = [
    record("TEST-RICH-MEDIUM", "PyPI", "rich", "99.0", severity="MODERATE"),
    record("TEST-PAR2-NOFIX", "Debian", "par2", None, severity="CRITICAL"),
    record("TEST-DAR-EXCEPTED", "Debian", "dar", "2.7.9-1", severity="HIGH"),
]
SHARED_EXCEPTIONS = """
[[IgnoredVulns]]
id = "TEST-DAR-EXCEPTED"
ignoreUntil = 2099-12-31
reason = "the affected code is not built into dar"

[[IgnoredVulns]]
id = "TEST-GONE-1"
ignoreUntil = 2099-12-31
reason = "fixed long ago"
"""


def make_shared_release(where: Path, key: KeyPair) -> None:
    """The shared release, into where: its registry's storage, its clone; released.json once it landed."""
    registry = LocalRegistry(where / "registry")
    registry.root.mkdir(parents=True)
    registry.start()
    checkout = where / "checkout"
    try:
        subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(checkout)], check=True)
        # The scan lists what does not refuse, and an exception lets a fixable high finding pass.
        (checkout / "osv-scanner.toml").write_text(SHARED_EXCEPTIONS)
        subprocess.run(["git", "-C", str(checkout), "commit", "-qam", "An exception"], check=True)
        db = write_db(where / "vuln-db", SHARED_RECORDS)
        env = {**key.env(), "DAR_BACKUP_VULN_DB": str(db)}
        repo = f"{registry.address}/{NAME}"
        done = release(checkout, "--image-version", SHARED_VERSION, "--repo", repo, env=env)
        if done.returncode != 0:
            (where / "failed.txt").write_text(done.stdout[-4000:] + done.stderr[-2000:])
            return
        (where / "released.json").write_text(json.dumps({"port": registry.port}))
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def released(image, cosign_key: KeyPair, shared: Path) -> Iterator[Released]:
    """One release shared by the tests that only read what a release produced.

    A release costs a build from cache, the whole test story, a push and cosign: most of a
    minute. The tests that take this fixture read the registry, the clone's history and its
    reports and never change them; a test that releases after it does so from its own clone to
    `registry_copy`, and one that changes what was released changes a copy. Made once per run,
    by the first worker that asks; the others wait for it, and the registry serves while any
    worker uses it (tests/support/shared.py).
    """
    where, lock = shared / "released", shared / "released.lock"
    with exclusive(lock):
        if not where.exists():
            make_shared_release(where, cosign_key)
        # Every test that reads it errors here, each with the release's own output.
        landed, failed = where / "released.json", where / "failed.txt"
        why = failed.read_text() if failed.exists() else "see the error of the worker that made it"
        assert landed.exists(), "the shared release failed:\n" + why
        port = json.loads(landed.read_text())["port"]
        serving = SharedRegistry(LocalRegistry(where / "registry", port=port, started=True), where)
        serving.join()
    try:
        yield Released(serving.registry, where / "checkout", SHARED_VERSION)
    finally:
        with exclusive(lock):
            serving.leave()


def test_release_lands_version_minor_and_latest_with_one_digest(docker: Docker, released: Released):
    registry, checkout = released.registry, released.checkout
    assert [t for t in registry.tags(NAME) if not t.startswith("sha256-")] == ["1.2", "1.2.0", "latest"]
    digests = {
        registry.skopeo("inspect", f"docker://{registry.address}/{NAME}:{t}")["Digest"]
        for t in ("1.2", "1.2.0", "latest")
    }
    assert len(digests) == 1
    config = registry.skopeo("inspect", "--config", f"docker://{registry.address}/{NAME}:1.2.0")
    labels = config["config"]["Labels"]
    assert all(labels.get(f"org.opencontainers.image.{key}") for key in REQUIRED_OCI_KEYS)
    assert labels["org.opencontainers.image.version"] == "1.2.0"
    assert labels["org.opencontainers.image.ref.name"] == f"{registry.address}/{NAME}:1.2.0"
    builds = history.read(checkout / "doc/build-history.json")
    assert len(builds) == 1
    assert builds[0]["tag"] == "1.2.0" and builds[0]["digest"] == digests.pop()
    # The tool labels say what the released image itself reports, what the run recorded, and the locked pin.
    by_digest = f"{registry.address}/{NAME}@{builds[0]['digest']}"
    try:
        reported = {
            tool: tool_version(tool, docker.ok("run", "--rm", "--network", "none", by_digest, tool, "--version"))
            for tool in TOOLS
        }
    finally:
        docker("rmi", by_digest)
    assert reported["dar-backup"] == locked_dar_backup_version(checkout / "docker/requirements.txt")
    assert {tool: builds[0][f"{tool.replace('-', '_')}_version"] for tool in TOOLS} == reported
    labelled = {
        "dar-backup": labels.get("org.dar-backup.version"),
        "dar": labels.get("org.dar-backup.dar.version"),
        "par2": labels.get("org.dar-backup.par2.version"),
    }
    assert labelled == reported
    assert list(builds[0]["platforms"]) == [HOST]
    signed, platform = builds[0]["signing"], builds[0]["platforms"][HOST]
    assert platform["digest"] == builds[0]["digest"]
    hex_digest = builds[0]["digest"].removeprefix("sha256:")
    assert signed["signature"] == platform["signature"] == f"{registry.address}/{NAME}:sha256-{hex_digest}.sig"
    assert platform["attestation"] == f"{registry.address}/{NAME}:sha256-{hex_digest}.att"
    for kind in ("signature", "attestation"):
        assert registry.skopeo("inspect", f"docker://{platform[kind]}")["Digest"] == platform[f"{kind}_digest"]
    sbom = (checkout / HOST_SBOM).read_text()
    assert platform["sbom_sha256"] == hashlib.sha256(sbom.encode()).hexdigest()
    assert json.loads(sbom)["metadata"]["component"]["purl"].startswith(f"pkg:oci/dar-backup@{builds[0]['digest']}")
    assert (
        builds[0]["git_revision"]
        == subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )


def test_prerelease_with_credentials_pushes_only_its_tag(
    image, auth_registry: LocalRegistry, checkout: Path, signing_key: KeyPair
):
    env = {"DAR_BACKUP_REGISTRY_USERNAME": "releaser", "DAR_BACKUP_REGISTRY_PASSWORD": auth_registry.password}
    done = release(checkout, "--image-version", "2.0.0-rc.1", "--repo", f"{auth_registry.address}/{NAME}", env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert [t for t in auth_registry.tags(NAME) if not t.startswith("sha256-")] == ["2.0.0-rc.1"]
    assert len(auth_registry.tags(NAME)) == 3  # cosign pushed its signature and attestation with the login
    # No secret anywhere: output, reports, SBOM, history, the image's labels.
    key_body = "".join(signing_key.private.read_text().splitlines()[1:-1])
    published = auth_registry.skopeo("inspect", "--config", f"docker://{auth_registry.address}/{NAME}:2.0.0-rc.1")
    places = [done.stdout, done.stderr, json.dumps(published), history_bytes(checkout).decode()]
    places += [path.read_text() for path in (checkout / "reports").iterdir()]
    for secret in (auth_registry.password, signing_key.password, key_body, key_body[:40]):
        assert not any(secret in place for place in places)


def test_dry_run_changes_nothing_anywhere(image, registry: LocalRegistry, checkout: Path):
    before = history_bytes(checkout)
    done = release(checkout, "--image-version", "1.5.0", "--repo", f"{registry.address}/{NAME}", "--dry-run")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f'"{registry.address}/{NAME}:1.5.0"' in done.stdout and f'"{registry.address}/{NAME}:latest"' in done.stdout
    assert registry.tags(NAME) == []
    assert history_bytes(checkout) == before
    status = ["git", "-C", str(checkout), "status", "--porcelain"]
    assert subprocess.run(status, capture_output=True, text=True, check=True).stdout == ""


def seed_tag(docker: Docker, image: str, registry: LocalRegistry, tag: str) -> None:
    ref = f"{registry.address}/{NAME}:{tag}"
    docker.ok("tag", image, ref)
    docker.ok("push", ref)
    docker.ok("rmi", ref)


def write_history(checkout: Path, tag: str) -> None:
    entry = {**HISTORY_ENTRY, "tag": tag}
    (checkout / "doc/build-history.json").write_text(json.dumps({"format": history.FORMAT, "builds": [entry]}))
    subprocess.run(["git", "-C", str(checkout), "commit", "-qam", "history"], check=True)


@pytest.mark.parametrize(
    ("setup", "args", "code", "message"),
    [
        ("tag 3.0.0", ["--image-version", "3.0.0"], 1, "tag {repo}:3.0.0 already exists"),
        ("tag 3.0.0", ["--image-version", "2.9.9"], 1, "2.9.9 is not newer than 3.0.0 in the registry"),
        ("history 5.0.0", ["--image-version", "4.0.0"], 1, "4.0.0 is not newer than 5.0.0 in the build history"),
        ("", ["--image-version", "latest"], 2, "image version 'latest' is not a version"),
        ("", ["--image-version", "1.2"], 2, "image version '1.2' is not semver"),
        ("", ["--image-version", "0.5.06"], 2, "image version '0.5.06' is not semver"),
        (
            "",
            ["--image-version", "1.0.0", "--dar-backup-version", "1.1.10"],
            2,
            "dar-backup version 1.1.10 is not the one docker/requirements.txt locks",
        ),
        ("malformed history", ["--image-version", "1.0.0"], 2, "build history:"),
        ("lock without dar-backup", ["--image-version", "1.0.0"], 2, "docker/requirements.txt pins no dar-backup"),
        ("", ["--image-version", "1.0.0", "--no-such-flag"], 2, "unrecognized arguments: --no-such-flag"),
        ("dirty tree", ["--image-version", "1.0.0"], 2, "the git tree has uncommitted changes"),
        ("no signing key", ["--image-version", "1.0.0"], 2, "a release is signed: set DAR_BACKUP_COSIGN_KEY_FILE"),
        ("unreadable key", ["--image-version", "1.0.0"], 2, "DAR_BACKUP_COSIGN_KEY_FILE=/nonexistent/cosign.key"),
        ("no vulnerability database", ["--image-version", "1.0.0"], 2, "release scans each image before publishing"),
        ("malformed exceptions", ["--image-version", "1.0.0"], 2, "IgnoredVulns[0] (X-1) gives no reason"),
        ("lapsed exception", ["--image-version", "1.0.0"], 1, "the exception for X-1 expired on 2026-01-31 (r)"),
    ],
)
def test_refusals_push_nothing_and_keep_history(docker, image, registry, checkout, setup, args, code, message):
    if setup.startswith("tag "):
        seed_tag(docker, image, registry, setup.split()[1])
    elif setup.startswith("history "):
        write_history(checkout, setup.split()[1])
    elif setup == "malformed history":
        (checkout / "doc/build-history.json").write_text('{"format": 1, "builds": [{"tag": "1.0.0"}]}')
        subprocess.run(["git", "-C", str(checkout), "commit", "-qam", "broken history"], check=True)
    elif setup == "lock without dar-backup":
        lock = checkout / "docker/requirements.txt"
        lock.write_text("".join(line for line in lock.read_text().splitlines(True) if "dar-backup==" not in line))
        subprocess.run(["git", "-C", str(checkout), "commit", "-qam", "no pin"], check=True)
    elif setup == "dirty tree":
        (checkout / "README.md").write_text("local edit\n")
    elif setup.endswith(" exception") or setup.endswith(" exceptions"):
        reason = "" if setup == "malformed exceptions" else "r"
        entry = f'[[IgnoredVulns]]\nid = "X-1"\nignoreUntil = 2026-01-31\nreason = "{reason}"\n'
        (checkout / "osv-scanner.toml").write_text(entry)
        subprocess.run(["git", "-C", str(checkout), "commit", "-qam", setup], check=True)
    key = {"no signing key": "", "unreadable key": "/nonexistent/cosign.key"}.get(setup)
    tags_before, history_before = registry.tags(NAME), history_bytes(checkout)
    env = {} if key is None else {"DAR_BACKUP_COSIGN_KEY_FILE": key}
    if setup == "no vulnerability database":
        env["DAR_BACKUP_VULN_DB"] = ""
    done = release(checkout, *args, "--repo", f"{registry.address}/{NAME}", env=env)
    assert done.returncode == code, done.stdout[-3000:] + done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message.format(repo=f"{registry.address}/{NAME}") in last
    assert registry.tags(NAME) == tags_before
    assert history_bytes(checkout) == history_before
    assert "[base " not in done.stdout  # refused before anything was built


def test_no_tag_a_user_pulls_names_the_release_before_its_signature_and_attestations_verified(released: Released):
    """The order of writes, from the registry's own access log: the candidate by digest, cosign's
    signature and attestations and their reads by the verification, and only then the tags."""
    requests = released.registry.requests()
    puts = [
        (n, path.rsplit("/", 1)[1]) for n, (m, path, _) in enumerate(requests) if m == "PUT" and "/manifests/" in path
    ]
    (version_at,) = [n for n, reference in puts if reference == released.version]
    before = [reference for n, reference in puts if n < version_at]
    assert all(reference.startswith(("sha256:", "sha256-")) for reference in before), before
    signatures = {reference.rsplit(".", 1)[-1] for reference in before if reference.startswith("sha256-")}
    assert signatures == {"sig", "att"}, requests
    assert [reference for n, reference in puts if n >= version_at] == [released.version, "1.2", "latest"]
    verified = [n for n, (m, path, _) in enumerate(requests) if m == "GET" and path.endswith((".sig", ".att"))]
    assert any(n < version_at for n in verified)


def test_wrong_credentials_are_refused_without_printing_them(image, auth_registry: LocalRegistry, checkout: Path):
    wrong = "not-the-Token-77aa"
    env = {"DAR_BACKUP_REGISTRY_USERNAME": "releaser", "DAR_BACKUP_REGISTRY_PASSWORD": wrong}
    before = history_bytes(checkout)
    done = release(checkout, "--image-version", "1.0.0", "--repo", f"{auth_registry.address}/{NAME}", env=env)
    assert done.returncode == 1
    assert "refused user 'releaser' (HTTP 401)" in done.stderr.splitlines()[-1]
    assert wrong not in done.stdout + done.stderr + (checkout / "reports/release.json").read_text()
    assert auth_registry.tags(NAME) == [] and history_bytes(checkout) == before


class DropsALabel(DockerEngine):
    async def build(self, spec: BuildSpec) -> Image:
        labels = {k: v for k, v in spec.labels.items() if not k.endswith(".licenses")}
        return await super().build(dataclasses.replace(spec, labels=labels))


class RegistryDiesAfterPush(DockerEngine):
    registry: LocalRegistry

    async def publish(self, images, repo, candidate_tag, auth):
        pushed = await super().publish(images, repo, candidate_tag, auth)
        self.registry.stop()
        return pushed


class RegistryDiesBeforeAttest(DockerEngine):
    """The registry goes away between the signature and the attestation."""

    registry: LocalRegistry

    async def run(self, image, argv, **options):
        if argv[:2] == ["cosign", "attest"]:
            self.registry.stop()
        return await super().run(image, argv, **options)


async def whole_release(engine: DockerEngine, config: RunConfig, report: Report, plan: Plan) -> None:
    await pipeline("release", engine, config, report, plan)


async def publish_untested(engine: DockerEngine, config: RunConfig, report: Report, plan: Plan) -> None:
    """final, the scan and the publish stage, composed without the test stage: for the tests of
    what a publish that fails leaves behind, which the test stage's minutes do not change."""
    built = await build_platform(engine, "final", config, HOST, report, plan.auth)
    assert built is not None
    await publish(engine, config, plan, [built], report, await vulnscan.gate(config, [built], report))


def release_in_process(
    engine_class: type[DockerEngine],
    registry: LocalRegistry | RelayProxy,
    checkout: Path,
    version: str,
    report: Report | None = None,
    stages: Callable[[DockerEngine, RunConfig, Report, Plan], Awaitable[None]] = whole_release,
) -> str:
    """A release in this process, on engine_class, that must fail; its one-line error (its steps go to report)."""
    config = release_config(f"{registry.address}/{NAME}", checkout, version, vuln_db=clean_db())
    report = report or Report("release", "docker")

    async def go() -> None:
        plan = preflight(config, maintainer_env(), checkout, report)
        engine = engine_class.open(config.run_id, REPO_ROOT)
        engine.registry = registry  # type: ignore[attr-defined]
        try:
            await stages(engine, config, report, plan)
        finally:
            await engine.close()

    with pytest.raises(StageFailure) as failure:
        anyio.run(go)
    return str(failure.value)


def test_a_missing_label_stops_the_release_before_the_push(image, registry: LocalRegistry, checkout: Path):
    before = history_bytes(checkout)
    report = Report("release", "docker")
    message = release_in_process(DropsALabel, registry, checkout, "1.0.0", report)
    assert message == "label org.opencontainers.image.licenses is missing or empty"
    assert registry.tags(NAME) == [] and history_bytes(checkout) == before
    # It stops right after final is built: the gate is final's, and nothing of the test stage ran.
    failed = [(s.stage, s.name, s.message) for s in report.steps if s.status == "failed"]
    assert failed == [("final", "label gate: every label the run declares is on the image", message)]
    assert report.steps[-1].status == "failed"
    assert [s.name for s in report.steps if s.stage == "test"] == []


def test_registry_gone_after_push_moves_no_tag_and_writes_no_history(image, registry: LocalRegistry, checkout):
    before = history_bytes(checkout)
    message = release_in_process(RegistryDiesAfterPush, registry, checkout, "1.1.0", stages=publish_untested)
    assert message.startswith(f"verification of {registry.address}/{NAME}:1.1.0 failed (could not remove")
    assert "by hand): registry" in message.splitlines()[0]
    registry.start()
    # The candidate went up by digest: no tag names what could not be removed.
    assert registry.tags(NAME) == []
    assert history_bytes(checkout) == before


def test_release_gate_reads_every_page_of_tags(registry: LocalRegistry, checkout: Path):
    # 249 releases 1.0.x sort before 9.0.0, so the newest version is alone on the third page of 100.
    tags = [f"1.0.{n}" for n in range(249)] + ["9.0.0"]
    registry.push_tiny_image(NAME, tags)
    proxy = PagingProxy(registry)
    try:
        first = urllib.request.urlopen(f"http://{proxy.address}/v2/{NAME}/tags/list?n=100", timeout=10)
        assert "9.0.0" not in json.loads(first.read())["tags"] and 'rel="next"' in first.headers["Link"]
        assert sorted(Registry(f"{proxy.address}/{NAME}").tags()) == sorted(tags) == registry.tags(NAME)
        before = history_bytes(checkout)
        for version, message in [("5.0.0", "5.0.0 is not newer than 9.0.0 in the registry"), ("9.0.0", "exists")]:
            done = release(checkout, "--image-version", version, "--repo", f"{proxy.address}/{NAME}")
            assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
            assert message in done.stderr.strip().splitlines()[-1]
            assert "[base " not in done.stdout
    finally:
        proxy.close()
    assert len(registry.tags(NAME)) == 250 and history_bytes(checkout) == before


def test_a_user_verifies_the_release_with_its_public_key_only(
    docker: Docker, tools: Image, released: Released, signing_key, other_key
):
    checkout, ref = released.checkout, released.ref
    assert cosign(docker, tools, "verify", ref, key=signing_key.public).returncode == 0
    wrong = cosign(docker, tools, "verify", ref, key=other_key.public)
    assert wrong.returncode != 0 and "no matching signatures" in wrong.stderr
    attested = cosign(docker, tools, "verify-attestation", "--type", "cyclonedx", ref, key=signing_key.public)
    assert attested.returncode == 0, attested.stderr[-2000:]
    digest = history.read(checkout / "doc/build-history.json")[0]["digest"]
    written = json.loads((checkout / HOST_SBOM).read_text())
    assert attested_predicates(attested.stdout, digest) == [written]


def test_a_user_verifies_the_vulnerability_scan_with_the_release_key_only(
    docker: Docker, tools: Image, released: Released, signing_key: KeyPair, other_key: KeyPair
):
    checkout, ref = released.checkout, released.ref
    args = ("verify-attestation", "--type", "vuln", ref)
    verified = cosign(docker, tools, *args, key=signing_key.public)
    assert verified.returncode == 0, verified.stderr[-2000:]
    wrong = cosign(docker, tools, *args, key=other_key.public)
    assert wrong.returncode != 0 and "no matching" in wrong.stderr
    (entry,) = history.read(checkout / "doc/build-history.json")
    (attested,) = attested_predicates(verified.stdout, entry["digest"], signing.VULN.predicate_type)
    # cosign signed the scan as the release wrote it: every field, the timestamps to the second.
    written = (checkout / "reports" / vulnscan.scan_file(HOST)).read_text()
    assert attested == json.loads(written)
    result = attested["scanner"]["result"]
    assert {f["id"] for f in result["findings"]} == {"TEST-RICH-MEDIUM", "TEST-PAR2-NOFIX"} and result["refused"] == []
    assert result["exceptions"] == [
        {"id": "TEST-DAR-EXCEPTED", "until": "2099-12-31", "reason": "the affected code is not built into dar"}
    ]
    assert [w["id"] for w in result["stale_exceptions"]] == ["TEST-GONE-1"]
    assert attested["scanner"]["version"] == "2.6.0" and "--offline" in attested["invocation"]["parameters"]
    recorded = entry["platforms"][HOST]["vulnerabilities"]
    assert {k: recorded[k] for k in ("findings", "fixable", "exceptions")} == {
        "findings": 2,
        "fixable": 1,
        "exceptions": 1,
    }
    assert recorded["packages"] == len(json.loads((checkout / HOST_SBOM).read_text())["components"])
    assert recorded["sha256"] == hashlib.sha256(written.encode()).hexdigest()
    assert recorded["database"].startswith("Debian ") and " PyPI " in recorded["database"]
    # The notes list the findings and the exceptions, with their reasons.
    text = (checkout / "reports/release-notes.md").read_text()
    section = text.split("## Vulnerability scan\n\n", 1)[1].split("\n## ", 1)[0]
    assert f"- {HOST} finding: TEST-RICH-MEDIUM rich 15.0.0 fixed in 99.0 (medium)" in section
    assert f"- {HOST} finding: TEST-PAR2-NOFIX par2 " in section and "fixed in no release (critical)" in section
    assert f"- {HOST} exception: TEST-DAR-EXCEPTED until 2099-12-31: the affected code is not built into dar" in section
    assert f"- {HOST} stale exception (matches nothing): TEST-GONE-1" in section


def git(checkout: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_user_verifies_the_provenance_and_it_names_what_the_run_used(
    docker: Docker, tools: Image, released: Released, signing_key: KeyPair, other_key
):
    registry, checkout, ref = released.registry, released.checkout, released.ref
    args = ("verify-attestation", "--type", "slsaprovenance1", ref)
    verified = cosign(docker, tools, *args, key=signing_key.public)
    assert verified.returncode == 0, verified.stderr[-2000:]
    assert cosign(docker, tools, *args, key=other_key.public).returncode != 0
    (entry,) = history.read(checkout / "doc/build-history.json")
    digest = entry["digest"]
    (attested,) = attested_predicates(verified.stdout, digest, provenance.PREDICATE_TYPE)
    # What the user verified is the statement the release wrote, about the released digest.
    statement = json.loads((checkout / "reports" / provenance.provenance_file(HOST)).read_text())
    assert statement["predicate"] == attested and statement["predicateType"] == provenance.PREDICATE_TYPE
    assert statement["subject"] == [{"name": f"{registry.address}/{NAME}", "digest": {"sha256": digest[7:]}}]
    assert entry["signing"]["attested"] == [
        signing.CYCLONEDX_PREDICATE,
        provenance.PREDICATE_TYPE,
        signing.VULN.predicate_type,
    ]
    assert (
        entry["platforms"][HOST]["provenance_sha256"]
        == hashlib.sha256(provenance.render(attested).encode()).hexdigest()
    )
    # Every field is what the run used: the labels, the checkout, the engine, the files, the report.
    labels = registry.skopeo("inspect", "--config", f"docker://{ref}")["config"]["Labels"]
    revision = git(checkout, "rev-parse", "HEAD")
    run = json.loads((checkout / "reports/release.json").read_text())["run"]
    definition, details = attested["buildDefinition"], attested["runDetails"]
    assert definition["buildType"] == provenance.BUILD_TYPE
    assert definition["externalParameters"] == {
        "source": labels["org.opencontainers.image.source"],
        "ref": git(checkout, "symbolic-ref", "HEAD"),
        "revision": revision,
        "version": released.version,
        "platforms": [HOST],
        "platform": HOST,
        "darBackupVersion": labels["org.dar-backup.version"],
    }
    engine_version = docker.ok("version", "--format", "{{.Server.Version}}").strip()
    assert definition["internalParameters"] == {"engine": "docker", "engineVersion": engine_version}
    source, base, *files = definition["resolvedDependencies"]
    assert source["digest"] == {"gitCommit": revision}
    base_name, base_digest = labels["org.opencontainers.image.base.name"], labels.get(BASE_DIGEST)
    if base_digest:
        uri = f"oci://{base_name.partition('@')[0]}"
        assert base == {"name": "base image", "uri": uri, "digest": {"sha256": base_digest[7:]}}
    else:  # bootstrapped here: no registry serves it, named as local by its image id
        assert base == {
            "name": "base image",
            "uri": f"local:{base_name}",
            "digest": {"sha256": labels[BASE_LOCAL_ID][7:]},
        }
    assert {f["name"]: f["digest"]["sha256"] for f in files} == {
        path: hashlib.sha256((checkout / path).read_bytes()).hexdigest() for path in provenance.BUILD_FILES
    }
    assert details["builder"] == {"id": "urn:dar-backup-image:local-builder:docker"}
    assert details["metadata"]["invocationId"] == run["run_id"]
    assert details["metadata"]["startedOn"] <= details["metadata"]["finishedOn"] <= entry_time(checkout)
    # No secret in what anyone can read: the statement and the attestation cosign serves.
    key_body = "".join(signing_key.private.read_text().splitlines()[1:-1])
    for secret in (signing_key.password, key_body, key_body[:40]):
        assert secret not in json.dumps(statement) and secret not in verified.stdout


def entry_time(checkout: Path) -> str:
    """When the release's reports were last written: after the provenance was made."""
    seconds = (checkout / "reports/release.json").stat().st_mtime
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds + 1))


class ProvenanceChangedAfterWriting(DockerEngine):
    """The provenance predicate reaches cosign changed: another revision than the one written."""

    async def run(self, image, argv, **options):
        if argv[:4] == ["cosign", "attest", "--yes", "--type"] and argv[4] == provenance.PREDICATE_TYPE:
            files = dict(options["files"])
            path = signing.PROVENANCE_PATH
            document = json.loads(files[path])
            document["buildDefinition"]["externalParameters"]["revision"] = "0" * 40
            options = {**options, "files": {**files, path: json.dumps(document)}}
        return await super().run(image, argv, **options)


class ScanChangedAfterWriting(DockerEngine):
    """The scan reaches cosign changed: another scanner version than the one written."""

    async def run(self, image, argv, **options):
        if argv[:4] == ["cosign", "attest", "--yes", "--type"] and argv[4] == signing.VULN.attest_type:
            files = dict(options["files"])
            document = json.loads(files[signing.VULN_PATH])
            document["scanner"]["version"] = "0.0.1"
            options = {**options, "files": {**files, signing.VULN_PATH: json.dumps(document)}}
        return await super().run(image, argv, **options)


@pytest.mark.parametrize(
    ("engine_class", "kind"), [(ProvenanceChangedAfterWriting, "slsaprovenance1"), (ScanChangedAfterWriting, "vuln")]
)
def test_a_predicate_attested_otherwise_than_written_withdraws_the_candidate(
    image, registry: LocalRegistry, checkout: Path, engine_class, kind
):
    before = history_bytes(checkout)
    message = release_in_process(engine_class, registry, checkout, "1.8.0", stages=publish_untested)
    ref, repo = f"{registry.address}/{NAME}:1.8.0", f"{registry.address}/{NAME}"
    assert re.match(
        rf"signature verification of {ref} failed \(removed the candidate {repo}@sha256:\w+\): the {kind} predicates ",
        message,
    ), message
    assert registry.tags(NAME) == [] and history_bytes(checkout) == before


def test_verify_refuses_a_tag_pointed_at_other_content(
    docker: Docker, tools: Image, released: Released, registry_copy: LocalRegistry, signing_key: KeyPair
):
    # The tag is moved on a copy: other workers read the shared release meanwhile.
    registry, checkout = registry_copy, released.checkout
    ref = f"{registry.address}/{NAME}:{released.version}"
    digest = history.read(checkout / "doc/build-history.json")[0]["digest"]
    sbom = (checkout / HOST_SBOM).read_text()
    identity = signing_identity(signing_key.env())
    public = signing_key.public.read_text()

    async def verify(ref: str) -> None:
        engine = DockerEngine("verify-test", REPO_ROOT, docker.client)
        try:
            cosign = Cosign(engine, tools, identity, loopback=registry.address)
            await cosign.verify(ref, digest, public)
            await cosign.verify_attestation(ref, digest, public, [sbom])
        finally:
            await engine.close()

    anyio.run(verify, ref)  # the untouched release verifies
    other = registry.push_tiny_image(NAME, [released.version])  # someone points the tag at other content
    with pytest.raises(SigningError, match="cosign verify exited"):
        anyio.run(verify, ref)
    # Pointed back at what the release pushed, it verifies again.
    served = Registry(f"{registry.address}/{NAME}")
    assert served.tag(digest, released.version) == digest
    assert served.delete(other) == "removed"
    anyio.run(verify, ref)


def test_a_failed_signing_on_a_registry_refusing_deletes_leaves_no_tag_and_records_nothing(
    image, checkout: Path, signing_key: KeyPair, tmp_path: Path, monkeypatch, capfd
):
    """The candidate cannot be withdrawn there, and still no version tag names it: none was ever written."""
    registry = LocalRegistry(tmp_path / "keeps", deletes=False)
    registry.root.mkdir()
    registry.start()
    monkeypatch.setenv("DAR_BACKUP_COSIGN_PASSWORD", "not-the-key-password")
    try:
        before = history_bytes(checkout)
        message = release_in_process(DockerEngine, registry, checkout, "1.6.0", stages=publish_untested)
        ref, repo = f"{registry.address}/{NAME}:1.6.0", f"{registry.address}/{NAME}"
        assert re.match(
            rf"signing of {ref} failed \(the registry does not allow deletes: the candidate {repo}@sha256:\w+ "
            r"stays, under no tag\): cosign public-key exited 1",
            message,
        ), message
        assert ("DELETE", f"/v2/{NAME}/manifests/", 405) in [
            (m, p[: p.rfind("/") + 1], c) for m, p, c in registry.requests()
        ]
        assert registry.tags(NAME) == [] and history_bytes(checkout) == before
    finally:
        registry.stop()
    printed = capfd.readouterr()
    assert f"[release] sign {repo}@sha256:" in printed.out  # what the run printed, read here
    assert "not-the-key-password" not in message + printed.out + printed.err


def commit_history(checkout: Path, version: str) -> None:
    subprocess.run(["git", "-C", str(checkout), "commit", "-qam", f"Build history: {version}"], check=True)


def follows_the_shared_release(checkout: Path, released: Released) -> str:
    """checkout's history records the shared release, committed as a maintainer commits it; its version."""
    (checkout / "doc/build-history.json").write_bytes(history_bytes(released.checkout))
    commit_history(checkout, released.version)
    return released.version


@pytest.fixture
def registry_copy(released: Released, tmp_path: Path) -> Iterator[LocalRegistry]:
    """A registry of its own that holds what the shared release pushed, for a test that releases after it.

    Its storage is a copy of the shared registry's: the test's tags, signatures and floating
    tags land here, never where the tests reading the shared release look.
    """
    copy = LocalRegistry(tmp_path / "registry-copy")
    shutil.copytree(released.registry.root / "data", copy.root / "data")
    copy.start()
    yield copy
    copy.stop()


def test_refresh_releases_the_next_patch_only_when_packages_changed_or_the_last_release_has_a_fix(
    docker: Docker, image, released: Released, registry_copy: LocalRegistry, checkout: Path, tmp_path: Path
):
    registry, repo = registry_copy, f"{registry_copy.address}/{NAME}"
    last = follows_the_shared_release(checkout, released)
    following = semver.Version.parse(last).bump_patch()
    tags = registry.tags(NAME)
    done = release(checkout, "--repo", repo, command="refresh")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"[refresh] nothing changed since {last} and nothing to fix: nothing to release" in done.stdout
    assert registry.tags(NAME) == tags and len(history.read(checkout / "doc/build-history.json")) == 1
    # Decided on the built image alone: nothing to release runs no test stage and no upgrade check.
    assert "[final " in done.stdout and "[test " not in done.stdout and "[upgrade " not in done.stdout
    # The day's database has a fix for a package of the last release: a reason to release, but a
    # candidate on the same base has the same package, so the gate refuses it, naming the finding.
    fix = record("TEST-E2FS-1", "Debian", "e2fsprogs", "1.47.0-3", severity="HIGH")
    env = {"DAR_BACKUP_VULN_DB": str(write_db(tmp_path / "vuln-db", [fix]))}
    done = release(checkout, "--repo", repo, command="refresh", env=env)
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-2:] == [
        f"{HOST}: TEST-E2FS-1 e2fsprogs 1.47.0-2+b2 fixed in 1.47.0-3 (high)",
        "error: vulnerability gate: 1 fixable at or above high",
    ]
    assert "[test " not in done.stdout  # refused before the test stage
    assert registry.tags(NAME) == tags and len(history.read(checkout / "doc/build-history.json")) == 1
    # The same base with one package more and without the vulnerable one, as after a base image update.
    labels = json.loads(docker.ok("image", "inspect", "-f", "{{json .Config.Labels}}", image))
    dockerfile = (
        f"FROM {labels['org.opencontainers.image.base.name']}\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends less && rm -rf /var/lib/apt/lists/* "
        "&& dpkg --purge e2fsprogs\n"
    )
    built = subprocess.run(
        [docker.client, "build", "-t", "dar-backup-test-base:refresh", "-"],
        input=dockerfile, capture_output=True, text=True, check=False, env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    try:
        done = release(
            checkout, "--repo", repo, "--base-image", "dar-backup-test-base:refresh", command="refresh", env=env
        )
    finally:
        docker("rmi", "dar-backup-test-base:refresh")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    builds = history.read(checkout / "doc/build-history.json")
    assert [b["tag"] for b in builds] == [last, str(following)]
    assert builds[1]["notes"].startswith("refresh: ") and "+less " in builds[1]["notes"]
    assert "-e2fsprogs 1.47.0-2+b2" in builds[1]["notes"]
    assert f"{HOST}: {last} has TEST-E2FS-1 e2fsprogs 1.47.0-2+b2 fixed in 1.47.0-3 (high)" in builds[1]["notes"]
    assert builds[1]["platforms"][HOST]["vulnerabilities"]["findings"] == 0
    # Both bases are the engine's own images, no registry's: recorded and compared by local image id.
    before, after = (build["platforms"][HOST]["base_local_id"] for build in builds)
    assert before != after and builds[1]["platforms"][HOST]["base_digest"] is None
    assert f"base image local {before} → local {after}" in builds[1]["notes"]
    assert builds[1]["platforms"][HOST]["packages_sha256"] != builds[0]["platforms"][HOST]["packages_sha256"]
    assert {str(following), f"{following.major}.{following.minor}", "latest"} <= set(registry.tags(NAME))
    report = json.loads((checkout / "reports/refresh.json").read_text())
    assert any(note.startswith(f"refresh {following}: ") and "+less " in note for note in report["notes"])


def test_refresh_without_a_previous_release_has_nothing_to_do(registry: LocalRegistry, checkout: Path):
    done = release(checkout, "--repo", f"{registry.address}/{NAME}", command="refresh")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.strip() == "[refresh] nothing to refresh: no release yet"
    assert registry.tags(NAME) == [] and not (checkout / "reports").exists()


def test_a_second_release_proves_the_first_releases_archives_restore(
    docker: Docker, tools: Image, released: Released, registry_copy: LocalRegistry, checkout: Path, signing_key: KeyPair
):
    # The first release is the shared one; the second goes to a copy of its registry.
    first = json.loads((released.checkout / "reports/release.json").read_text())
    assert [(s["name"], s["status"], s["message"]) for s in first["steps"] if s["stage"] == "upgrade"] == [
        ("archives of the previous release restore with the candidate", "skipped", "skipped: no previous release")
    ]
    first_notes = (released.checkout / "reports/release-notes.md").read_text()
    assert (
        first_notes.startswith(f"# dar-backup image {released.version}\n")
        and "- First release in the build history" in first_notes
    )
    assert "## Upgrade check\n\nskipped: no previous release\n" in first_notes
    first_version = follows_the_shared_release(checkout, released)
    previous = history.read(checkout / "doc/build-history.json")[0]["image_ref"]
    done = release(checkout, "--image-version", "1.3.0", "--repo", f"{registry_copy.address}/{NAME}")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    report = json.loads((checkout / "reports/release.json").read_text())
    assert report["run"]["previous_image"] == previous and report["run"]["previous_version"] == first_version
    upgrade = [s for s in report["steps"] if s["stage"] == "upgrade"]
    assert upgrade[0]["name"] == f"pull the previous release {previous} ({HOST})"
    assert all(s["status"] == "passed" for s in upgrade), upgrade
    names = [s["name"] for s in upgrade]
    for level in ("FULL", "DIFF", "INCR"):
        assert f"{level}: the candidate restores {first_version}'s chain" in names
        assert f"{level}: the candidate's PITR from {first_version}'s catalog" in names
    assert f"rollback: {first_version} restores the candidate's FULL" in names
    upgraded = f"upgrade from {first_version} ({previous}): previous: dar-backup "
    assert any(n.startswith(upgraded) for n in report["notes"])
    # The second release's notes: the first as previous, from the history, and commands that work.
    first_entry, second = history.read(checkout / "doc/build-history.json")
    text = (checkout / "reports/release-notes.md").read_text()
    assert f"- Previous release: {first_version} (`{first_entry['image_ref']}`)" in text
    assert f"- Image: `{second['image_ref']}`" in text and f"| {HOST} | `{second['digest']}` |" in text
    for tool, key in (("dar-backup", "dar_backup_version"), ("dar", "dar_version"), ("par2", "par2_version")):
        assert f"- {tool} {second[key]} (unchanged)" in text
    # The same base and packages as the first: refresh's comparison finds nothing.
    assert f"No change since {first_version}." in text
    gating = [s for s in upgrade if not s["name"].startswith("rollback: ")]
    assert f"## Upgrade check\n\npassed: {len(gating)}/{len(gating)} checks, {first_version}'s archives" in text
    commands = text.split("```sh\n", 1)[1].split("\n```", 1)[0].splitlines()
    assert len(commands) == 4 and all(second["image_ref"] in c for c in commands)
    # A user runs them as written, beside the public key they were given.
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "cosign"
        ran = docker(
            "run", "--rm", "--network", "host", "-v", f"{signing_key.public}:/user/cosign.pub:ro", "-w", "/user",
            tools.ref, *argv[1:],
        )  # fmt: skip
        assert ran.returncode == 0, command + "\n" + ran.stderr[-2000:]


class DarRefusesOldArchives(DockerEngine):
    """A candidate whose dar passes its own story but refuses to read what the previous release wrote.

    Once the previous release is pulled (the upgrade check begins), the candidate's containers
    run from a test-only image FROM the candidate whose `dar`, first on PATH, always fails.
    """

    candidate: Image | None = None
    doctored: Image | None = None

    async def build(self, spec: BuildSpec) -> Image:
        built = await super().build(spec)
        if spec.target == "final":
            self.candidate = built
        return built

    async def pull(self, ref, auth, platform=None):
        pulled = await super().pull(ref, auth, platform)
        wrapper = "#!/bin/sh\\necho dar: refusing >&2\\nexit 5\\n"
        # BuildKit cannot build FROM an image id: the candidate's tag names it.
        run = f"RUN printf '{wrapper}' > /usr/local/bin/dar && chmod 755 /usr/local/bin/dar"
        dockerfile = f"FROM {self.candidate.description}\n{run}\n"
        built = subprocess.run(
            [self.client, "build", "-q", "-"], input=dockerfile, capture_output=True, text=True, check=True,
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
        )  # fmt: skip
        self.doctored = Image(built.stdout.strip(), "doctored candidate", built.stdout.strip())
        return pulled

    async def run(self, image, argv, **options):
        if self.doctored is not None and image.ref == self.candidate.ref:
            image = self.doctored
        return await super().run(image, argv, **options)


def test_a_candidate_that_cannot_read_the_previous_archives_is_refused(released: Released, checkout: Path):
    # The shared release is the previous one, and the candidate reaches its registry only through
    # a relay that passes reads alone, so it can change nothing the other tests read.
    previous = follows_the_shared_release(checkout, released)
    proxy = RelayProxy(released.registry)
    try:
        tags, before = released.registry.tags(NAME), history_bytes(checkout)
        message = release_in_process(DarRefusesOldArchives, proxy, checkout, "1.3.0")
    finally:
        proxy.close()
    assert message.startswith(f"upgrade from {previous} fails at FULL: the candidate's dar -t scenario_FULL_")
    assert "exited 5" in message.splitlines()[0]
    assert released.registry.tags(NAME) == tags and history_bytes(checkout) == before


def test_test_with_a_previous_image_that_does_not_exist_stops_before_any_backup(docker: Docker, image):
    argv = [
        sys.executable,
        "ci/main.py",
        "--engine",
        "docker",
        "test",
        "--previous-image",
        "127.0.0.1:9/dar-backup:0.0.1",
    ]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: pulling 127.0.0.1:9/dar-backup:0.0.1 failed")
    assert "[base " not in done.stdout and "[test " not in done.stdout


def test_registry_gone_mid_attest_moves_no_tag_and_writes_no_history(image, registry: LocalRegistry, checkout):
    before = history_bytes(checkout)
    message = release_in_process(RegistryDiesBeforeAttest, registry, checkout, "1.7.0", stages=publish_untested)
    first = message.splitlines()[0]
    assert first.startswith(f"signing of {registry.address}/{NAME}:1.7.0 failed (could not remove")
    assert "by hand): cosign attest exited" in first
    registry.start()
    # The candidate and its signature stay for a human to remove, under no version tag; nothing is recorded.
    assert [t for t in registry.tags(NAME) if not t.startswith("sha256-")] == []
    assert history_bytes(checkout) == before


def test_cosign_signs_a_provenance_given_by_type_uri_as_written_and_rewrites_it_as_slsaprovenance1(
    docker: Docker, tools: Image, registry: LocalRegistry, cosign_key: KeyPair, tmp_path: Path
):
    """Why signing.PROVENANCE attests by URI: the rule, shown on the tools image's own cosign."""
    predicate = {
        "buildDefinition": {"buildType": provenance.BUILD_TYPE, "externalParameters": {"revision": "abc"}},
        "runDetails": {"builder": {"id": "urn:x"}, "metadata": {"invocationId": "run-1"}},
    }
    (tmp_path / "predicate.json").write_text(json.dumps(predicate))
    keys = cosign_key.private.parent
    found = {}
    # One repository each: cosign keeps every attestation of a digest together.
    for tag, kind in (("by-uri", provenance.PREDICATE_TYPE), ("by-name", "slsaprovenance1")):
        repo = f"{registry.address}/{NAME}-{tag}"
        registry.push_tiny_image(f"{NAME}-{tag}", ["1"])
        digest = registry.skopeo("inspect", f"docker://{repo}:1")["Digest"]
        docker.ok(
            "run", "--rm", "--network", "host", "-e", f"COSIGN_PASSWORD={cosign_key.password}",
            "-v", f"{keys}:/keys:ro", "-v", f"{tmp_path}:/in:ro", tools.ref,
            "attest", "--yes", "--type", kind, "--predicate", "/in/predicate.json", "--key", "/keys/cosign.key",
            "--tlog-upload=false", "--allow-insecure-registry", f"{repo}@{digest}",
        )  # fmt: skip
        args = ("verify-attestation", "--type", "slsaprovenance1", f"{repo}@{digest}")
        verified = cosign(docker, tools, *args, key=cosign_key.public)
        assert verified.returncode == 0, verified.stderr[-2000:]
        (found[tag],) = attested_predicates(verified.stdout, digest, provenance.PREDICATE_TYPE)
    assert found["by-uri"] == predicate
    assert found["by-name"]["runDetails"]["metadata"] == {"invocationID": "run-1"}
