"""Refresh decisions as plain functions: the next version, what changed and how it reads."""

import json
import subprocess

import anyio
import pytest

from ci.core.baseimage import BaseImage
from ci.core.errors import StageFailure, UsageError
from ci.core.report import Report
from ci.engines.seam import Image
from ci.image.sbom import (
    ImageContents,
    build_bom,
    deb_versions,
    package_set_sha256,
    parse_distributions,
    parse_dpkg,
    parse_os_release,
    render,
)
from ci.image.vulns import Finding
from ci.release.plan import preflight
from ci.release.refresh import base_change, fix_reasons, next_patch, package_changes, what_changed
from ci.stages.build import Built
from tests.support.samples import AMD64, DISTS, DPKG, HISTORY_ENTRY, OS_RELEASE, release_config


def render_document(dpkg: str = DPKG) -> str:
    contents = ImageContents(parse_os_release(OS_RELEASE), parse_dpkg(dpkg), parse_distributions(DISTS))
    return render(build_bom(contents, "1.0.0", "2026-11-26T10:00:00Z"))


def document(dpkg: str = DPKG) -> dict:
    return json.loads(render_document(dpkg))


def test_next_patch_follows_the_last_release():
    assert str(next_patch([HISTORY_ENTRY, {**HISTORY_ENTRY, "tag": "1.4.2"}])) == "1.4.3"
    assert next_patch([]) is None


def test_package_set_digest_changes_with_any_package_and_nothing_else():
    same = document()
    assert package_set_sha256(same) == package_set_sha256(document())
    newer = document(DPKG.replace("dar\t2.7.8-2+b9", "dar\t2.7.8-2+b10"))
    assert package_set_sha256(newer) != package_set_sha256(same)
    assert deb_versions(newer)["dar"] == "2.7.8-2+b10" and "dar-backup" not in deb_versions(newer)


def test_changes_name_each_package():
    old = {"dar": "2.7.8-2+b9", "par2": "0.8.1-2", "gone": "1.0"}
    new = {"dar": "2.7.8-2+b10", "par2": "0.8.1-2", "less": "590-2"}
    assert package_changes(old, new) == ["dar 2.7.8-2+b9 → 2.7.8-2+b10", "+less 590-2", "-gone 1.0"]
    assert package_changes(old, old) == []


A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_a_base_change_is_another_digest_or_another_local_image_either_way():
    by_digest = {**AMD64, "base_digest": A, "base_local_id": None}
    local = {**AMD64, "base_image": "dar-backup-local-base:noble", "base_digest": None, "base_local_id": A}
    assert base_change(by_digest, BaseImage("ubuntu:24.04", digest=A)) == []
    assert base_change(by_digest, BaseImage("ubuntu:24.04", digest=B)) == [f"base image {A} → {B}"]
    assert base_change(local, BaseImage("dar-backup-local-base:noble", local_id=A)) == []
    assert base_change(local, BaseImage("dar-backup-local-base:noble", local_id=B)) == [
        f"base image local {A} → local {B}"
    ]
    # The same sha256 as a registry digest and as a local image id are not the same base.
    assert base_change(by_digest, BaseImage("ubuntu:24.04", local_id=A)) == [f"base image {A} → local {A}"]
    assert base_change(local, BaseImage("ubuntu:24.04", digest=A)) == [f"base image local {A} → {A}"]


def test_each_platform_is_compared_with_its_own_record_in_the_last_release():
    # The base digest is recorded per platform; the entry itself has none to compare with.
    record = {**AMD64, "base_digest": A, "packages_sha256": package_set_sha256(document())}
    last = {**HISTORY_ENTRY, "platforms": {"linux/amd64": record}}

    def changes(last: dict, base_digest: str) -> list[str]:
        base = BaseImage("ubuntu:24.04", digest=base_digest)
        built = Built("linux/amd64", base, Image("candidate", "the candidate"), {}, {}, render_document())
        # The same package set: nothing is pulled, so no engine is needed.
        return anyio.run(what_changed, None, last, built, None)

    assert changes(last, B) == [f"linux/amd64: base image {A} → {B}"]
    assert changes(last, A) == []
    assert changes({**last, "platforms": {}}, A) == ["linux/amd64 was not in 1.0.0"]


def test_a_fixable_finding_in_the_last_release_is_a_reason_named_as_the_gate_names_it():
    finding = Finding("TEST-1", "e2fsprogs", "Debian", "1.47.0-2+b2", "1.47.0-3", "high")
    assert fix_reasons("1.2.0", "linux/amd64", [finding]) == [
        "linux/amd64: 1.2.0 has TEST-1 e2fsprogs 1.47.0-2+b2 fixed in 1.47.0-3 (high)"
    ]
    assert fix_reasons("1.2.0", "linux/amd64", []) == []


def test_a_run_for_another_revision_than_the_checkout_is_refused_before_anything(checkout):
    """Refresh dispatched from a branch checks out the default branch: GITHUB_SHA names the branch's commit."""
    config = release_config("127.0.0.1:9/dar-backup", checkout, "1.0.1", dry_run=True)
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert config.revision == head.strip()
    other = {"GITHUB_SHA": "f" * 40, "GITHUB_REF": "refs/heads/feature"}
    with pytest.raises(UsageError) as refused:
        preflight(config, other, checkout, Report("refresh", "docker"))
    assert str(refused.value) == (
        f"the checkout is {head[:12]} but the run is for ffffffffffff (refs/heads/feature): a release builds, "
        "labels, records and signs one revision; run it from the default branch"
    )
    # The same run for the checked-out commit passes this gate and goes on to the registry (none there).
    with pytest.raises(StageFailure, match="cannot check the registry"):
        preflight(config, {"GITHUB_SHA": config.revision}, checkout, Report("refresh", "docker"))
