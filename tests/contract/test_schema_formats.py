"""DAGGER_SCHEMA may name SDL or the introspection JSON a Dagger CLI exports: the same schema either way."""

import json
from pathlib import Path

import graphql
import pytest

from tests.support.recording import SCHEMA, load_schema

SCHEMA_DOCUMENT = Path(__file__).with_name("introspection.graphql")


@pytest.mark.parametrize("wrapped", [False, True])
def test_introspection_json_gives_the_schema_the_sdl_gives(schema, wrapped):
    introspection = graphql.introspection_from_schema(schema)
    text = json.dumps({"data": introspection} if wrapped else introspection)
    loaded = load_schema(text)
    assert graphql.print_schema(loaded) == graphql.print_schema(load_schema(SCHEMA.read_text()))
    valid = graphql.parse('{ container { from(address: "alpine") { withExec(args: ["true"]) { exitCode } } } }')
    invalid = graphql.parse("{ container { noSuchField } }")
    assert graphql.validate(loaded, valid) == []
    assert graphql.validate(loaded, invalid)


def test_the_introspection_document_exports_the_whole_schema_deprecated_arguments_included(schema):
    # The checks job validates against what this document exports. The engine leaves deprecated
    # arguments and input fields out unless asked (dagql/introspection/types.go: Field.Args and
    # Type.InputFields take includeDeprecated): the pinned engine then drops File.asEnvFile(expand),
    # Query.envFile(expand) and Query.git(keepGitDir), which it still accepts.
    document = SCHEMA_DOCUMENT.read_text()
    result = graphql.graphql_sync(schema, document)
    assert result.errors is None
    exported = graphql.build_client_schema(result.data)
    assert graphql.print_schema(exported) == graphql.print_schema(schema)
