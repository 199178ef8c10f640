"""A recording Dagger session: the real SDK builds every query, the pinned schema validates it.

`execute` refuses any query with a validation error, records it, and answers it by walking the
selection set. Object IDs (`id`, `sync`) are handed out here and remember the call chain that
made them, so a later `node(id:)` resumes that chain; leaf fields go to a scripted `answer`.

The client comes from `dagger.Client.from_connection`, the SDK's public way to put a client
over a connection. What the SDK then calls on that connection is not public: its query context
calls `conn.session.get_schema()` and `conn.session.execute(request)` (`dagger/client/_core.py`),
so this session speaks the SDK's internal session protocol as read in the pinned dagger-io;
a test fails when the installed SDK is not the pinned one.
"""

from __future__ import annotations

import itertools
import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagger
import graphql

from ci.core.config import REPO_ROOT

# The SDK pyproject.toml pins, and the schema exported from its engine (DAGGER_SCHEMA names another place).
DAGGER_VERSION = next(
    requirement.removeprefix("dagger-io==")
    for requirement in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    if requirement.startswith("dagger-io==")
)
SCHEMA = Path(os.environ.get("DAGGER_SCHEMA", REPO_ROOT.parent / f"shared/dagger/schema-v{DAGGER_VERSION}.graphqls"))

Call = tuple[str, dict[str, Any]]
Chain = tuple[Call, ...]
Answer = Callable[[Chain, str, dict[str, Any]], Any]


class InvalidQuery(AssertionError):
    pass


def load_schema(text: str) -> graphql.GraphQLSchema:
    """SDL (the pinned schema file), or introspection JSON as `dagger query` prints it (CI exports it)."""
    if text.lstrip().startswith("{"):
        result = json.loads(text)
        return graphql.build_client_schema(result.get("data", result))
    return graphql.build_schema(text)


@dataclass
class RecordingSession:
    schema: graphql.GraphQLSchema
    answer: Answer
    queries: list[str] = field(default_factory=list)
    chains: dict[str, Chain] = field(default_factory=dict)
    answered: list[tuple[Chain, str]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def get_schema(self) -> graphql.GraphQLSchema:
        return self.schema

    async def execute(self, request: Any) -> Any:
        document = request.document
        errors = graphql.validate(self.schema, document)
        text = graphql.print_ast(document)
        if errors:
            raise InvalidQuery(f"query invalid against the schema: {[e.message for e in errors]}\n{text}")
        self.queries.append(text)
        variables = getattr(request, "variable_values", None) or {}
        operation = next(d for d in document.definitions if isinstance(d, graphql.OperationDefinitionNode))
        return self._resolve(operation.selection_set, (), variables)

    def _resolve(self, selection_set: graphql.SelectionSetNode, chain: Chain, variables: dict[str, Any]) -> Any:
        result: dict[str, Any] = {}
        for selection in selection_set.selections:
            if isinstance(selection, graphql.InlineFragmentNode):
                result.update(self._resolve(selection.selection_set, chain, variables))
                continue
            assert isinstance(selection, graphql.FieldNode)
            name = selection.name.value
            args = {a.name.value: graphql.value_from_ast_untyped(a.value, variables) for a in selection.arguments}
            key = selection.alias.value if selection.alias else name
            if name == "node":
                resumed = self.chains[args["id"]]
                result[key] = self._resolve(selection.selection_set, resumed, variables)
            elif selection.selection_set is not None:
                result[key] = self._resolve(selection.selection_set, (*chain, (name, args)), variables)
            elif name in ("id", "sync"):
                result[key] = self.new_id(chain)
            else:
                self.answered.append((chain, name))
                result[key] = self.answer(chain, name, args)
        return result

    def client(self) -> dagger.Client:
        """A real SDK client whose every query comes here."""
        return dagger.Client.from_connection(RecordingConnection(self))

    def new_id(self, chain: Chain) -> str:
        object_id = f"ID{next(self._ids)}"
        self.chains[object_id] = chain
        return object_id

    def expand(self, value: Any) -> Any:
        """An argument with object IDs replaced by the chains that made them."""
        if isinstance(value, str) and value in self.chains:
            return self.chains[value]
        if isinstance(value, list):
            return [self.expand(v) for v in value]
        return value


@dataclass
class RecordingConnection:
    """What `dagger.Client.from_connection` is given: an object with a `session`."""

    session: RecordingSession


def calls(chain: Chain, name: str) -> list[dict[str, Any]]:
    return [args for call, args in chain if call == name]
