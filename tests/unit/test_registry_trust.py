"""How far the registry client trusts a registry: where credentials may go, how much it reads, how long it waits.

Real HTTP servers on 127.0.0.1 answer as a hostile or broken registry would.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from ci.core.errors import RegistryError, RegistryUnreachable
from ci.oci.registry import (
    ANSWER_LIMIT,
    BLOB_LIMIT,
    MANIFEST_LIMIT,
    MIB,
    TAGS_PAGE_LIMIT,
    TOKEN_LIMIT,
    Registry,
    base_url,
    is_loopback,
    may_carry_credentials,
)
from tests.support.answering import answering, reply
from tests.support.registry import free_port

PASSWORD = "s3cret-Pass-71c4"
TOKEN = "tok-9e0b-bearer"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}).encode()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("127.3.2.1", True),
        ("localhost:5000", True),
        ("LOCALHOST", True),
        ("[::1]:5000", True),
        ("127.example", False),
        ("127.example:5000", False),
        ("127.0.0.1.example:5000", False),
        ("localhost.example", False),
        ("0.0.0.0:5000", False),
        ("10.0.0.1:5000", False),
        ("[::2]:5000", False),
        ("ghcr.io", False),
    ],
)
def test_loopback_is_an_address_parsed_as_one_or_localhost(host, loopback):
    assert is_loopback(host) is loopback
    assert base_url(host) == f"{'http' if loopback else 'https'}://{host}"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://auth.example/token", True),
        ("https://127.example/token", True),
        ("http://127.0.0.1:5001/token", True),
        ("http://[::1]/token", True),
        ("http://127.example/token", False),
        ("http://auth.example/token", False),
        ("ftp://127.0.0.1/token", False),
        ("/token", False),
    ],
)
def test_credentials_go_only_over_https_or_to_this_machine(url, allowed):
    assert may_carry_credentials(url) is allowed


def token_server(seen_tokens: list[str]):
    """A registry on the loopback whose token realm is `realm` (a format string for its own host)."""

    def serve(realm: str):
        def answer(handler):
            if handler.path.startswith("/token"):
                reply(handler, 200, json.dumps({"token": TOKEN}).encode())
            elif handler.headers.get("Authorization") == f"Bearer {TOKEN}":
                seen_tokens.append(TOKEN)
                reply(handler, 200, json.dumps({"tags": ["1.0.0"]}).encode())
            else:
                host = handler.headers["Host"]
                challenge = f'Bearer realm="{realm.format(host=host)}",service="test",scope="repository:x:pull"'
                reply(handler, 401, headers={"WWW-Authenticate": challenge})

        return answering(answer)

    return serve


def test_a_token_realm_on_this_machine_gets_the_credentials():
    used: list[str] = []
    with token_server(used)("http://{host}/token") as (host, seen):
        assert Registry(f"{host}/x", "me", PASSWORD).tags() == ["1.0.0"]
    assert [s.path.split("?")[0] for s in seen] == ["/v2/x/tags/list", "/token", "/v2/x/tags/list"]
    assert seen[1].authorization is not None and seen[1].authorization.startswith("Basic ")
    assert used == [TOKEN]


@pytest.mark.parametrize("username", ["me", None], ids=["credentials", "anonymous"])
def test_a_token_realm_on_plain_http_elsewhere_is_refused_before_anything_is_sent(username):
    # `127.example` does not resolve: a request sent to it would fail as unreachable, not be refused.
    with token_server([])("http://127.example:5001/token") as (host, seen):
        registry = Registry(f"{host}/x", username, PASSWORD if username else None)
        with pytest.raises(RegistryError, match=r"token realm http://127\.example:5001 is not HTTPS: refused") as err:
            registry.tags()
    assert not isinstance(err.value, RegistryUnreachable)
    assert [s.path.split("?")[0] for s in seen] == ["/v2/x/tags/list"]
    assert PASSWORD not in str(err.value)


def endless(handler):
    """A body with no end (no Content-Length: it lasts until the connection closes)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
    handler.end_headers()
    chunk = b" " * 65536
    while True:
        handler.wfile.write(chunk)


@pytest.mark.parametrize(
    ("what", "limit", "call"),
    [
        ("manifest", MANIFEST_LIMIT, lambda r: r.manifest("1.0.0")),
        ("tags page", TAGS_PAGE_LIMIT, lambda r: r.tags()),
        ("blob", BLOB_LIMIT, lambda r: r.blob("sha256:" + "0" * 64)),
        ("error page", ANSWER_LIMIT, lambda r: r.delete("sha256:" + "0" * 64)),
    ],
)
def test_an_answer_longer_than_its_limit_is_refused_without_reading_on(what, limit, call):
    def answer(handler):
        if what == "error page":
            reply(handler, 500, b" " * (ANSWER_LIMIT + 1))
        else:
            endless(handler)

    with answering(answer) as (host, _):
        started = time.monotonic()
        with pytest.raises(RegistryError, match=f"the answer is longer than {limit // MIB} MiB"):
            call(Registry(f"{host}/x"))
    assert time.monotonic() - started < 10


def test_a_manifest_at_the_limit_is_read():
    body = MANIFEST + b" " * (MANIFEST_LIMIT - len(MANIFEST))
    with answering(lambda handler: reply(handler, 200, body)) as (host, _):
        assert Registry(f"{host}/x").manifest("1.0.0")[1] == body


def test_a_token_answer_longer_than_its_limit_is_refused():
    def answer(handler):
        if handler.path.startswith("/token"):
            reply(handler, 200, json.dumps({"token": "x" * TOKEN_LIMIT}).encode())
        else:
            realm = f"http://{handler.headers['Host']}/token"
            reply(handler, 401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})

    with answering(answer) as (host, _), pytest.raises(RegistryError, match="longer than 1 MiB"):
        Registry(f"{host}/x").tags()


# Each drips 16 bytes, one every half second: a whole answer in 8 s, long past a 2 s deadline.
DRIP = 16


def drip_headers(handler):
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    for _ in range(DRIP):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.5)
    handler.wfile.write(b"\r\nContent-Length: 0\r\n\r\n")


def drip_body(handler):
    handler.send_response(200)
    handler.send_header("Content-Length", str(DRIP))
    handler.end_headers()
    for _ in range(DRIP):
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.5)


@pytest.mark.parametrize("drip", [drip_headers, drip_body], ids=["headers", "body"])
def test_a_registry_that_drips_its_answer_is_cut_off_at_the_deadline(drip):
    with answering(drip) as (host, _):
        started = time.monotonic()
        with pytest.raises(RegistryError, match=r"GET /v2/x/manifests/1\.0\.0 on .*: no whole answer within 2 s"):
            Registry(f"{host}/x", deadline=2).manifest("1.0.0")
        assert 2 <= time.monotonic() - started < 4


def test_unreachable_means_no_registry_answered():
    """What the local engine may fall back on: a name that does not resolve, a connection refused."""
    for host in (f"127.0.0.1:{free_port()}", "nowhere.invalid:5000"):
        with pytest.raises(RegistryUnreachable, match=f"registry {host} unreachable"):
            Registry(f"{host}/x").manifest("1.0.0")
    with answering(lambda handler: reply(handler, 429, b"slow down")) as (host, _):
        with pytest.raises(RegistryError, match="HTTP 429") as answered:
            Registry(f"{host}/x").manifest("1.0.0")
        assert not isinstance(answered.value, RegistryUnreachable)
    with answering(drip_body) as (host, _):
        with pytest.raises(RegistryError, match="no whole answer") as slow:
            Registry(f"{host}/x", deadline=1).manifest("1.0.0")
        assert not isinstance(slow.value, RegistryUnreachable)


def test_a_blob_within_its_limit_is_read_through_the_deadline_reader():
    blob = b"x" * (3 * MIB)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with answering(lambda handler: reply(handler, 200, blob)) as (host, _):
        assert Registry(f"{host}/x").blob(digest) == blob


def test_a_logged_in_registry_shows_neither_its_password_nor_its_token():
    with token_server([])("http://{host}/token") as (host, _):
        registry = Registry(f"{host}/x", "me", PASSWORD)
        registry.tags()
    assert registry._token == TOKEN
    for shown in (repr(registry), str(registry), f"{registry}", repr([registry])):
        assert PASSWORD not in shown and TOKEN not in shown
        assert "'me'" in shown and host in shown
