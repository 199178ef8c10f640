"""The pinned Dagger API schema the contract tests validate every query against."""

from __future__ import annotations

from collections.abc import Iterator

import graphql
import pytest

from ci.oci import auth
from tests.support.recording import DAGGER_VERSION, SCHEMA, load_schema
from tests.support.registry import LocalRegistry


@pytest.fixture(scope="session")
def schema() -> graphql.GraphQLSchema:
    if not SCHEMA.is_file():
        pytest.skip(
            f"Dagger API schema not found at {SCHEMA}: export it from a dagger {DAGGER_VERSION} engine "
            "(`dagger query -M --doc tests/contract/introspection.graphql > schema.json`) "
            "and set DAGGER_SCHEMA"
        )
    return load_schema(SCHEMA.read_text())


# What the pipeline builds FROM by default (ubuntu:24.04, the tools image debian:trixie-slim).
HUB_BASES = {"ubuntu:24.04": ("library/ubuntu", "24.04"), "debian:trixie-slim": ("library/debian", "trixie-slim")}


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRegistry, dict[str, dict[str, str]]]]:
    """A real registry holding the default bases, each an index of both platforms: base → platform → digest."""
    local = LocalRegistry(tmp_path_factory.mktemp("hub"))
    local.start()
    try:
        yield (
            local,
            {ref: local.push_tiny_index(name, tag, ["amd64", "arm64"]) for ref, (name, tag) in HUB_BASES.items()},
        )
    finally:
        local.stop()


@pytest.fixture(autouse=True)
def docker_hub(
    hub: tuple[LocalRegistry, dict[str, dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> dict[str, dict[str, str]]:
    """Docker Hub, where the default bases resolve, is the loopback registry here (as a hosts entry would make it).

    The registry client and the registry are real: each base's index is read and its platform picked.
    """
    local, bases = hub
    monkeypatch.setattr(auth, "DOCKER_HUB", local.address)
    return bases
