"""Refresh decisions as plain functions: the next version, what changed and how it reads."""

import json

from ci.core.baseimage import BaseImage
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
from ci.release.refresh import base_change, next_patch, package_changes
from samples import AMD64, DISTS, DPKG, HISTORY_ENTRY, OS_RELEASE


def document(dpkg: str = DPKG) -> dict:
    contents = ImageContents(parse_os_release(OS_RELEASE), parse_dpkg(dpkg), parse_distributions(DISTS))
    return json.loads(render(build_bom(contents, "1.0.0", "2026-11-26T10:00:00Z")))


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
