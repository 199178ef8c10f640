"""The foreign platform (arm64 on an amd64 host): built from the same Dockerfile under emulation,
gated, backed up and restored there, and released beside the host's platform as one image index."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from ci.core.config import DEV_IMAGE_VERSION, REPO_ROOT
from ci.core.names import IMAGE_NAME
from ci.core.platforms import SUPPORTED, architecture, host_platform
from ci.core.versions import locked_dar_backup_version
from ci.engines.seam import Image
from ci.image.sbom import sbom_file
from ci.oci import media as oci
from ci.release import history, provenance, signing
from ci.release.signing import attested_predicates
from ci.stages import vulnscan
from tests.support.docker import Docker, KeyPair, run_pipeline
from tests.support.registry import LocalRegistry
from tests.support.releasing import NAME, cosign, release

pytestmark = pytest.mark.engine
HOST = host_platform()
FOREIGN = next(platform for platform in SUPPORTED if platform != HOST)
UNAME = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}


@pytest.fixture(scope="module")
def foreign_final(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`final --platform FOREIGN` as a user runs it: the reports and the image's local tag."""
    reports = tmp_path_factory.mktemp("foreign-final")
    done = run_pipeline("final", "--platform", FOREIGN, "--report-dir", str(reports))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return reports, f"{IMAGE_NAME}:{DEV_IMAGE_VERSION}-{architecture(FOREIGN)}"


def run_on(platform: str) -> tuple[str, ...]:
    return ("run", "--rm", "--network", "none", "--platform", platform)


def test_the_foreign_image_is_built_for_its_platform_and_gated_there(docker: Docker, foreign_final):
    reports, tag = foreign_final
    assert docker.ok("image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", tag).strip() == FOREIGN
    assert docker.ok(*run_on(FOREIGN), "--entrypoint", "uname", tag, "-m").strip() == UNAME[FOREIGN]
    report = json.loads((reports / "final.json").read_text())
    assert report["outcome"] == "passed"
    assert {step["platform"] for step in report["steps"]} == {FOREIGN}
    gate = [s for s in report["steps"] if s["name"].startswith("version gate")]
    assert [s["status"] for s in gate] == ["passed"]
    facts = report["run"]["platforms"][FOREIGN]
    assert docker.ok(*run_on(FOREIGN), tag, "--version").splitlines()[0].endswith(facts["dar-backup_version"])
    # Every distribution package the SBOM lists was installed for the foreign architecture.
    sbom = json.loads((reports / sbom_file(FOREIGN)).read_text())
    arches = {re.search(r"arch=([^&]+)", c["purl"]).group(1) for c in sbom["components"] if "pkg:deb/" in c["purl"]}
    assert arches <= {architecture(FOREIGN), "all"} and architecture(FOREIGN) in arches


def raw_manifest(registry: LocalRegistry, ref: str) -> tuple[str, dict]:
    """The digest and document of what ref names, from skopeo's raw bytes."""
    creds = ["--creds", f"{registry.username}:{registry.password}"] if registry.username else []
    argv = ["skopeo", "inspect", "--raw", "--tls-verify=false", *creds, f"docker://{ref}"]
    raw = subprocess.run(argv, capture_output=True, check=True).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest(), json.loads(raw)


@pytest.mark.registry
def test_a_two_platform_release_publishes_one_index_gated_and_signed_per_platform(
    docker: Docker, image, foreign_final, tools: Image, cosign_key: KeyPair, registry: LocalRegistry, checkout: Path
):
    repo = f"{registry.address}/{NAME}"
    key = cosign_key.env()
    refused = release(
        checkout, "--image-version", "2.0.0", "--repo", repo, "--platform", "linux/amd64,linux/s390x", env=key
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: unknown platform 'linux/s390x'; supported: linux/amd64, linux/arm64"
    )
    done = release(checkout, "--image-version", "2.0.0", "--repo", repo, "--platform", ",".join(SUPPORTED), env=key)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    index_digest, index = raw_manifest(registry, f"{repo}:2.0.0")
    assert index["mediaType"] == oci.INDEX
    platforms = oci.index_platforms(index)
    assert sorted(platforms) == sorted(SUPPORTED)
    for tag in ("2.0", "latest"):
        assert raw_manifest(registry, f"{repo}:{tag}")[0] == index_digest
    (entry,) = history.read(checkout / "doc/build-history.json")
    assert entry["digest"] == index_digest and entry["image_ref"] == f"{repo}@{index_digest}"
    assert {name: facts["digest"] for name, facts in entry["platforms"].items()} == platforms
    report = json.loads((checkout / "reports/release.json").read_text())
    for platform, digest in platforms.items():
        # Each platform's config is that platform's, with the run's labels; its tests ran on it.
        config = registry.skopeo("inspect", "--config", f"docker://{repo}@{digest}")
        assert f"{config['os']}/{config['architecture']}" == platform
        labels = config["config"]["Labels"]
        assert labels["org.opencontainers.image.version"] == "2.0.0"
        assert labels["org.dar-backup.version"] == entry["dar_backup_version"]
        # The whole story ran on each (the foreign one under emulation), every restore equal to its snapshot.
        tested = {s["name"] for s in report["steps"] if s["platform"] == platform and s["stage"] == "test"}
        assert (
            "INCR: restore FULL + DIFF + INCR" in tested
            and "bitrot, fragmented: par2 repair restores the exact bytes" in tested
        )
        assert any(s["name"] == f"verify {repo}@{digest}" for s in report["steps"] if s["platform"] == platform)
        facts = entry["platforms"][platform]
        sbom = json.loads((checkout / "reports" / sbom_file(platform)).read_text())
        assert sbom["metadata"]["component"]["purl"].startswith(f"pkg:oci/dar-backup@{digest}")
        assert facts["attestation"] == f"{repo}:{digest.replace(':', '-')}.att"
        args = ("verify-attestation", "--type", "cyclonedx", f"{repo}@{digest}")
        attested = cosign(docker, tools, *args, key=cosign_key.public)
        assert attested.returncode == 0, attested.stderr[-2000:]
        assert attested_predicates(attested.stdout, digest) == [sbom]
        # Its own provenance, about its own digest, naming its platform and its base.
        statement = json.loads((checkout / "reports" / provenance.provenance_file(platform)).read_text())
        assert statement["subject"][0]["digest"] == {"sha256": digest.removeprefix("sha256:")}
        args = ("verify-attestation", "--type", "slsaprovenance1", f"{repo}@{digest}")
        verified = cosign(docker, tools, *args, key=cosign_key.public)
        assert verified.returncode == 0, verified.stderr[-2000:]
        (predicate,) = attested_predicates(verified.stdout, digest, provenance.PREDICATE_TYPE)
        assert predicate == statement["predicate"]
        assert predicate["buildDefinition"]["externalParameters"]["platform"] == platform
        assert predicate["buildDefinition"]["externalParameters"]["platforms"] == list(SUPPORTED)
        base = predicate["buildDefinition"]["resolvedDependencies"][1]
        name = labels["org.opencontainers.image.base.name"]
        assert base["uri"] in (f"oci://{name.partition('@')[0]}", f"local:{name}")
        assert facts["provenance_sha256"] == hashlib.sha256(provenance.render(predicate).encode()).hexdigest()
    # The tag's index carries every platform's provenance too.
    args = ("verify-attestation", "--type", "slsaprovenance1", f"{repo}:2.0.0")
    verified = cosign(docker, tools, *args, key=cosign_key.public)
    assert verified.returncode == 0, verified.stderr[-2000:]
    on_index = attested_predicates(verified.stdout, index_digest, provenance.PREDICATE_TYPE)
    assert sorted(p["buildDefinition"]["externalParameters"]["platform"] for p in on_index) == sorted(SUPPORTED)
    # Verifying the tag as users do finds every platform's SBOM on the index.
    args = ("verify-attestation", "--type", "cyclonedx", f"{repo}:2.0.0")
    attested = cosign(docker, tools, *args, key=cosign_key.public)
    assert attested.returncode == 0, attested.stderr[-2000:]
    written = [json.loads((checkout / "reports" / sbom_file(platform)).read_text()) for platform in SUPPORTED]
    on_index = attested_predicates(attested.stdout, index_digest)
    assert len(on_index) == 2 and all(sbom in on_index for sbom in written)
    assert entry["signing"]["attestation"] == f"{repo}:{index_digest.replace(':', '-')}.att"
    # And every platform's vulnerability scan, each as that platform's scan wrote it.
    args = ("verify-attestation", "--type", "vuln", f"{repo}:2.0.0")
    attested = cosign(docker, tools, *args, key=cosign_key.public)
    assert attested.returncode == 0, attested.stderr[-2000:]
    on_index = attested_predicates(attested.stdout, index_digest, signing.VULN.predicate_type)
    written = [json.loads((checkout / "reports" / vulnscan.scan_file(platform)).read_text()) for platform in SUPPORTED]
    assert sorted(p["scanner"]["result"]["platform"] for p in on_index) == sorted(SUPPORTED)
    assert all(scan in on_index for scan in written)
    assert all(facts["vulnerabilities"]["packages"] > 100 for facts in entry["platforms"].values())
    # The index's signature covers every platform manifest (cosign sign --recursive).
    for digest in (index_digest, *platforms.values()):
        verified = cosign(docker, tools, "verify", f"{repo}@{digest}", key=cosign_key.public)
        assert verified.returncode == 0, verified.stderr[-2000:]
    pulled = f"{repo}@{platforms[FOREIGN]}"
    docker.ok("pull", "-q", "--platform", FOREIGN, pulled)
    try:
        answer = docker.ok(*run_on(FOREIGN), pulled, "dar-backup", "--version").splitlines()[0]
        assert answer.endswith(locked_dar_backup_version(REPO_ROOT / "docker/requirements.txt"))
    finally:
        docker("rmi", pulled)
