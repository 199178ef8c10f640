from __future__ import annotations

import os
import sys
from pathlib import Path

import graphql
import pytest

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(os.environ.get("DAGGER_SCHEMA", REPO.parent / "shared/dagger/schema-v0.21.8.graphqls"))


@pytest.fixture(scope="session")
def schema() -> graphql.GraphQLSchema:
    if not SCHEMA.is_file():
        pytest.skip(
            f"Dagger API schema not found at {SCHEMA}: export it from a dagger 0.21.8 engine "
            "(`dagger query --doc introspection` or the engine's schema.graphqls) and set DAGGER_SCHEMA"
        )
    return graphql.build_schema(SCHEMA.read_text())
