"""DAGGER_SCHEMA may name SDL or the introspection JSON a Dagger CLI exports: the same schema either way."""

import json

import graphql
import pytest

from tests.support.recording import SCHEMA, load_schema


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
