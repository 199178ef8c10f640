"""The registry client against loopback HTTP servers: where credentials go, what bytes are accepted."""

from __future__ import annotations

import hashlib

import pytest

from ci.core.errors import RegistryError
from ci.oci.registry import Registry
from tests.support.answering import answering, reply


def test_a_redirect_to_another_host_never_carries_the_credentials():
    digest = "sha256:" + hashlib.sha256(b"blob").hexdigest()
    with answering(lambda handler: reply(handler, 200, b"blob")) as (cdn, storage):
        redirect = {"Location": f"http://{cdn}/blob"}
        with answering(lambda handler: reply(handler, 307, headers=redirect)) as (host, registry_seen):
            assert Registry(f"{host}/base", "me", "s3cret").blob(digest) == b"blob"
    assert registry_seen[0].authorization and registry_seen[0].authorization.startswith("Basic ")
    assert [seen.authorization for seen in storage] == [None]


def test_a_blob_whose_bytes_have_another_digest_is_refused():
    with (
        answering(lambda handler: reply(handler, 200, b"blob")) as (host, _),
        pytest.raises(RegistryError, match="the bytes have another digest"),
    ):
        Registry(f"{host}/base").blob("sha256:" + hashlib.sha256(b"other").hexdigest())
