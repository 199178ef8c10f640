"""A release's candidate on a real registry: read back by digest, tagged only at the end, withdrawn without a trace."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
import semver

from ci.core.errors import RegistryError, StageFailure
from ci.engines.seam import Pushed
from ci.oci.media import index_platforms
from ci.oci.registry import Registry
from ci.release.plan import Plan
from ci.release.publish import Candidate, read_back
from tests.support.registry import LocalRegistry, RelayProxy

NAME = "dar-backup"
PLATFORMS = ["linux/amd64", "linux/arm64"]


def plan_for(registry: Registry, version: str = "1.4.0") -> Plan:
    return Plan(semver.Version.parse(version), registry.repo, [], Path("history.json"), [], None, registry, None)


class Swapping(RelayProxy):
    """Serves other bytes for one digest: a registry that answers what it was not asked for."""

    def __init__(self, upstream: LocalRegistry, digest: str, body: bytes) -> None:
        self.digest, self.body = digest, body
        super().__init__(upstream)

    def answer(self, method, parts, status, headers, body):
        if parts.path == f"/v2/{NAME}/manifests/{self.digest}":
            return headers, self.body
        return headers, body


def test_an_index_read_back_names_what_the_engine_pushed(registry: LocalRegistry):
    pushed = registry.push_tiny_index(NAME, "candidate-1", ["amd64", "arm64"])
    index = pushed.pop("index")
    served = Registry(f"{registry.address}/{NAME}")
    found = anyio.run(read_back, served, Pushed(index, pushed, "candidate-1"), PLATFORMS)
    assert found == pushed
    # The engine pushed another arm64 manifest than the index names.
    claimed = {**pushed, "linux/arm64": pushed["linux/amd64"]}
    with pytest.raises(StageFailure, match=r"names sha256:\w+ for linux/arm64, the engine pushed sha256:"):
        anyio.run(read_back, served, Pushed(index, claimed, "candidate-1"), PLATFORMS)
    # The candidate tag moved to other content after the push.
    other = registry.push_tiny_image(NAME, ["candidate-1"])
    with pytest.raises(StageFailure, match=f"the registry serves {other} for candidate-1"):
        anyio.run(read_back, served, Pushed(index, pushed, "candidate-1"), PLATFORMS)


@pytest.mark.parametrize("swapped", ["index", "linux/arm64"])
def test_a_registry_serving_other_bytes_for_a_digest_is_refused(registry: LocalRegistry, swapped: str):
    pushed = registry.push_tiny_index(NAME, "candidate-1", ["amd64", "arm64"])
    # The same platforms in the other order: another index, another digest.
    other = registry.push_tiny_index(NAME, "other", ["arm64", "amd64"])
    assert other["index"] != pushed["index"]
    served = Registry(f"{registry.address}/{NAME}")
    # In place of ours: the other index, or the amd64 manifest where the arm64 one was asked for.
    body = served.manifest(other["index"] if swapped == "index" else pushed["linux/amd64"])[1]
    proxy = Swapping(registry, pushed[swapped], body)
    try:
        relayed = Registry(f"{proxy.address}/{NAME}")
        index = pushed.pop("index")
        # The index the proxy serves in place of ours is a valid index of two platforms.
        assert sorted(index_platforms(json.loads(served.manifest(other["index"])[1]))) == PLATFORMS
        with pytest.raises(RegistryError, match="the bytes have another digest"):
            anyio.run(read_back, relayed, Pushed(index, {}, None), PLATFORMS)
    finally:
        proxy.close()


def test_untag_removes_the_candidate_tag_and_keeps_the_image_and_its_other_tags(registry: LocalRegistry):
    digest = registry.push_tiny_image(NAME, ["candidate-1", "1.4.0"])
    served = Registry(f"{registry.address}/{NAME}")
    assert served.untag("candidate-1", "test") == "removed"
    assert registry.tags(NAME) == ["1.4.0"]
    assert served.digest(digest) == digest and served.digest("1.4.0") == digest


def test_where_deletes_are_refused_a_failed_candidate_leaves_no_tag_naming_it(tmp_path: Path):
    keeps = LocalRegistry(tmp_path / "keeps", deletes=False)
    keeps.root.mkdir()
    keeps.start()
    try:
        digest = keeps.push_tiny_image(NAME, ["candidate-1"])
        served = Registry(f"{keeps.address}/{NAME}")
        candidate = Candidate(plan_for(served), [digest], "candidate-1")
        outcome = candidate.withdraw()
        assert (
            outcome == f"the registry does not allow deletes: the candidate {served.repo}@{digest} stays, under no tag"
        )
        # The candidate tag names an empty placeholder now; no tag names the image.
        assert keeps.tags(NAME) == ["candidate-1"] and served.digest("candidate-1") != digest
        assert json.loads(served.manifest("candidate-1")[1])["layers"] == []
    finally:
        keeps.stop()


def test_the_version_tag_is_written_last_and_only_where_still_absent(registry: LocalRegistry):
    digest = registry.push_tiny_image(NAME, ["candidate-2"])
    served = Registry(f"{registry.address}/{NAME}")
    assert anyio.run(Candidate(plan_for(served), [digest], "candidate-2").land) == "removed"
    assert registry.tags(NAME) == ["1.4.0"] and served.digest("1.4.0") == digest
    # Someone released 1.5.0 while this release was verifying: it is not overwritten.
    theirs = registry.push_tiny_image(NAME, ["1.5.0"], architecture="arm64")
    mine = registry.push_tiny_image(NAME, [], architecture="s390x")
    candidate = Candidate(plan_for(served, "1.5.0"), [mine])
    with pytest.raises(StageFailure, match=f"appeared during the release, naming {theirs}: it is not overwritten"):
        anyio.run(candidate.land)
    assert served.digest("1.5.0") == theirs
