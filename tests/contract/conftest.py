from __future__ import annotations

import os
import sys
from pathlib import Path

import graphql
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from recording import load_schema

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(os.environ.get("DAGGER_SCHEMA", REPO.parent / "shared/dagger/schema-v0.21.8.graphqls"))


@pytest.fixture(scope="session")
def schema() -> graphql.GraphQLSchema:
    if not SCHEMA.is_file():
        pytest.skip(
            f"Dagger API schema not found at {SCHEMA}: export it from a dagger 0.21.8 engine "
            "(`dagger query -M --doc introspection.graphql`, the query from graphql.get_introspection_query()) "
            "and set DAGGER_SCHEMA"
        )
    return load_schema(SCHEMA.read_text())
