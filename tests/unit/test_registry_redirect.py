"""The registry client against loopback HTTP servers: where credentials go, what bytes are accepted."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ci.core.errors import RegistryError
from ci.oci.registry import Registry


class Recorder(BaseHTTPRequestHandler):
    """Answers 200 with `blob`, or redirects to `redirect`; remembers each request's Authorization."""

    seen: list[str | None]
    redirect: str | None = None

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        if self.redirect:
            self.send_response(307)
            self.send_header("Location", self.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"blob")


@contextmanager
def serving(seen: list[str | None], redirect: str | None = None) -> Iterator[str]:
    handler = type("Handler", (Recorder,), {"seen": seen, "redirect": redirect})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_to_another_host_never_carries_the_credentials():
    storage: list[str | None] = []
    registry_seen: list[str | None] = []
    digest = "sha256:" + hashlib.sha256(b"blob").hexdigest()
    with serving(storage) as cdn, serving(registry_seen, f"http://{cdn}/blob") as host:
        assert Registry(f"{host}/base", "me", "s3cret").blob(digest) == b"blob"
    assert registry_seen[0] and registry_seen[0].startswith("Basic ")
    assert storage == [None]


def test_a_blob_whose_bytes_have_another_digest_is_refused():
    seen: list[str | None] = []
    with serving(seen) as host, pytest.raises(RegistryError, match="the bytes have another digest"):
        Registry(f"{host}/base").blob("sha256:" + hashlib.sha256(b"other").hexdigest())
