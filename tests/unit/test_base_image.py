"""The base a build goes FROM: its reference, its platform's digest in a real registry, its labels and record."""

from __future__ import annotations

import hashlib
import json

import pytest

from ci.core.baseimage import BaseImage
from ci.core.config import REPO_ROOT
from ci.core.errors import HistoryError, RegistryError
from ci.core.labels import BASE_DIGEST, BASE_LOCAL_ID, oci_labels
from ci.oci.auth import RegistryAuth, SecretRef, auth_for, split_reference
from ci.oci.base import platform_entry, resolve_digest
from ci.oci.media import MANIFEST
from ci.oci.registry import Registry
from ci.release.history import validate_base
from tests.support.samples import AMD64, release_config

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("ubuntu:24.04", ("ubuntu", "24.04")),
        ("ubuntu", ("ubuntu", "latest")),
        ("127.0.0.1:5000/base", ("127.0.0.1:5000/base", "latest")),
        ("127.0.0.1:5000/team/base:trixie", ("127.0.0.1:5000/team/base", "trixie")),
        (f"ubuntu:24.04@{A}", ("ubuntu", A)),
        (f"127.0.0.1:5000/base@{A}", ("127.0.0.1:5000/base", A)),
    ],
)
def test_a_reference_splits_into_repository_and_tag_or_digest(ref, expected):
    assert split_reference(ref) == expected


def test_the_runs_credentials_go_only_to_their_own_registry():
    hub = RegistryAuth("docker.io", "me", SecretRef("env://P"))
    local = RegistryAuth("127.0.0.1:5000", "me", SecretRef("env://P"))
    assert auth_for("ubuntu", hub) is hub and auth_for("docker.io/team/base", hub) is hub
    assert auth_for("127.0.0.1:5000/base", local) is local
    assert auth_for("ubuntu", local) is None and auth_for("127.0.0.1:5001/base", local) is None
    assert auth_for("ubuntu", None) is None


def test_a_base_is_from_a_registry_or_local_never_both_nor_neither():
    with pytest.raises(ValueError, match="exactly one"):
        BaseImage("ubuntu:24.04")
    with pytest.raises(ValueError, match="exactly one"):
        BaseImage("ubuntu:24.04", digest=A, local_id=B)


def test_a_build_goes_from_the_digest_and_a_local_base_by_its_image_id():
    assert BaseImage("ubuntu:24.04", digest=A).build_from == f"ubuntu:24.04@{A}"
    # A digest given with the name (an index's, say) gives way to the platform's.
    assert BaseImage(f"ubuntu:24.04@{B}", digest=A).build_from == f"ubuntu:24.04@{A}"
    # A local base by a tag made of its image id: BuildKit would pull `sha256:…`, and a tag may move.
    assert BaseImage("ubuntu:24.04", local_id=A).build_from == f"dar-backup-local-base:id-{A.removeprefix('sha256:')}"


def test_labels_name_the_base_as_given_and_its_digest_or_its_local_id():
    config = release_config("127.0.0.1:5000/dar-backup", REPO_ROOT, "1.0.0")
    by_digest = oci_labels(config, BaseImage(f"ubuntu:24.04@{B}", digest=A))
    assert by_digest["org.opencontainers.image.base.name"] == f"ubuntu:24.04@{B}"
    assert by_digest[BASE_DIGEST] == A and BASE_LOCAL_ID not in by_digest
    local = oci_labels(config, BaseImage("dar-backup-local-base:noble", local_id=A))
    assert local["org.opencontainers.image.base.name"] == "dar-backup-local-base:noble"
    assert local[BASE_LOCAL_ID] == A and BASE_DIGEST not in local


@pytest.mark.parametrize(
    ("digest", "local_id", "problem"),
    [
        (A, None, None),
        (None, A, None),
        (None, None, "exactly one"),
        (A, B, "exactly one"),
        ("md5:x", None, "not sha256"),
        (None, "51716f4b70e4", "not sha256"),
    ],
)
def test_the_history_records_one_base_identity(digest, local_id, problem):
    facts = {**AMD64, "base_digest": digest, "base_local_id": local_id}
    if problem is None:
        validate_base(facts, "p")
    else:
        with pytest.raises(HistoryError, match=problem):
            validate_base(facts, "p")


# Docker Hub's ubuntu index, abridged: arm64 has a variant, arm has two, attestations are unknown/unknown.
HUB_INDEX = {
    "manifests": [
        {"digest": "sha256:amd", "platform": {"architecture": "amd64", "os": "linux"}},
        {"digest": "sha256:arm64", "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"digest": "sha256:v6", "platform": {"architecture": "arm", "os": "linux", "variant": "v6"}},
        {"digest": "sha256:v7", "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
        {"digest": "sha256:att", "platform": {"architecture": "unknown", "os": "unknown"}},
    ]
}


def test_an_index_names_one_manifest_per_platform_or_is_refused():
    assert platform_entry(HUB_INDEX, "linux/amd64") == "sha256:amd"
    assert platform_entry(HUB_INDEX, "linux/arm64") == "sha256:arm64"
    with pytest.raises(RegistryError, match="names 2 images for linux/arm"):
        platform_entry(HUB_INDEX, "linux/arm")
    with pytest.raises(RegistryError, match="names 0 images for linux/s390x"):
        platform_entry(HUB_INDEX, "linux/s390x")


def test_a_multi_platform_base_resolves_to_each_platforms_manifest(registry):
    pushed = registry.push_tiny_index("library/base", "trixie", ["amd64", "arm64"])
    ref = f"{registry.address}/library/base:trixie"
    assert resolve_digest(ref, "linux/amd64", None) == pushed["linux/amd64"]
    assert resolve_digest(ref, "linux/arm64", None) == pushed["linux/arm64"]
    assert len({pushed["linux/amd64"], pushed["linux/arm64"], pushed["index"]}) == 3
    # Pinned to the index by its digest, a platform still gets its own manifest.
    assert (
        resolve_digest(f"{registry.address}/library/base@{pushed['index']}", "linux/arm64", None)
        == (pushed["linux/arm64"])
    )


def test_a_single_platform_base_resolves_only_for_its_own_platform(registry):
    digest = registry.push_tiny_image("base", ["amd64-only"], "amd64")
    assert resolve_digest(f"{registry.address}/base:amd64-only", "linux/amd64", None) == digest
    with pytest.raises(RegistryError, match="is an image for linux/amd64, not linux/arm64"):
        resolve_digest(f"{registry.address}/base:amd64-only", "linux/arm64", None)
    with pytest.raises(RegistryError, match="HTTP 404"):
        resolve_digest(f"{registry.address}/base:missing", "linux/amd64", None)


def test_a_private_base_is_read_with_the_runs_credentials(auth_registry, monkeypatch):
    monkeypatch.setenv("BASE_PASSWORD", auth_registry.password)
    registry = Registry(f"{auth_registry.address}/base", auth_registry.username, auth_registry.password)
    config = b'{"architecture":"amd64","os":"linux"}'
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    registry.upload_blob(config_digest, config)
    media = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": media, "layers": []}).encode()
    digest = registry.put_manifest("private", MANIFEST, manifest)
    auth = RegistryAuth(auth_registry.address, auth_registry.username, SecretRef("env://BASE_PASSWORD"))
    assert resolve_digest(f"{auth_registry.address}/base:private", "linux/amd64", auth) == digest
    with pytest.raises(RegistryError, match="refused anonymous access"):
        resolve_digest(f"{auth_registry.address}/base:private", "linux/amd64", None)
