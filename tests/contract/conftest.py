"""The pinned Dagger API schema the contract tests validate every query against."""

from __future__ import annotations

import graphql
import pytest

from tests.support.recording import DAGGER_VERSION, SCHEMA, load_schema


@pytest.fixture(scope="session")
def schema() -> graphql.GraphQLSchema:
    if not SCHEMA.is_file():
        pytest.skip(
            f"Dagger API schema not found at {SCHEMA}: export it from a dagger {DAGGER_VERSION} engine "
            "(`dagger query -M --doc tests/contract/introspection.graphql > schema.json`) "
            "and set DAGGER_SCHEMA"
        )
    return load_schema(SCHEMA.read_text())
