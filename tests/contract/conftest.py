from __future__ import annotations

import os
import sys
from importlib.metadata import version
from pathlib import Path

import graphql
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from recording import load_schema

REPO = Path(__file__).resolve().parents[2]
# The engine's API is the one of the SDK pyproject.toml pins: the CLI and engine are kept equal to it.
DAGGER_VERSION = version("dagger-io")
SCHEMA = Path(os.environ.get("DAGGER_SCHEMA", REPO.parent / f"shared/dagger/schema-v{DAGGER_VERSION}.graphqls"))


@pytest.fixture(scope="session")
def schema() -> graphql.GraphQLSchema:
    if not SCHEMA.is_file():
        pytest.skip(
            f"Dagger API schema not found at {SCHEMA}: export it from a dagger {DAGGER_VERSION} engine "
            "(`dagger query -M --doc tests/contract/introspection.graphql > schema.json`) "
            "and set DAGGER_SCHEMA"
        )
    return load_schema(SCHEMA.read_text())
