"""A real registry for the release tests: Debian's docker-registry (distribution) on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ci.oci.media import MANIFEST_TYPES


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalRegistry:
    root: Path
    username: str | None = None
    password: str | None = None
    port: int = field(default_factory=free_port)
    # Some registries refuse DELETE (distribution with storage.delete off, many hosted ones).
    deletes: bool = True
    process: subprocess.Popen[bytes] | None = None
    started: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        auth = ""
        if self.username:
            hashed = subprocess.run(
                ["htpasswd", "-Bbn", self.username, self.password or ""], capture_output=True, text=True, check=True
            ).stdout
            (self.root / "htpasswd").write_text(hashed)
            auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {self.root / 'htpasswd'}\n"
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n"
            f"  delete:\n    enabled: {str(self.deletes).lower()}\n"
            f"http:\n  addr: {self.address}\n" + auth
        )
        return config

    def start(self) -> None:
        """Serve, on this port again when restarted; a first start moves to a new port if it was taken.

        Up means this registry logged that it listens: a registry of a test run beside this one
        (the contract tests run beside the end-to-end tests) may already answer on the port.
        """
        for _ in range(5):
            if self.serve():
                return
            if self.started:
                break
            self.port = free_port()
        raise AssertionError(f"docker-registry did not start on {self.address}: {self.log.read_text()[-2000:]}")

    @property
    def log(self) -> Path:
        return self.root / "registry.log"

    def serve(self) -> bool:
        binary = shutil.which("docker-registry")
        assert binary, "docker-registry is not installed (scripts/dev test installs it)"
        listening = f'msg="listening on {self.address}"'
        before = self.log.read_text().count(listening) if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([binary, "serve", str(self.write_config())], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:  # e.g. "bind: address already in use"
                self.process = None
                return False
            if self.log.read_text().count(listening) > before:
                self.started = True
                return True
            time.sleep(0.1)
        self.stop()
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request this registry answered, in order, from its access log."""
        found = re.findall(r'"([A-Z]+) (/v2/\S*) HTTP/[\d.]+" (\d{3})', self.log.read_text())
        return [(method, path, int(status)) for method, path, status in found]

    def skopeo(self, *args: str) -> dict:
        creds = ["--creds", f"{self.username}:{self.password}"] if self.username else []
        done = subprocess.run(
            ["skopeo", *args[:1], "--tls-verify=false", *creds, *args[1:]], capture_output=True, text=True, check=True
        )
        return json.loads(done.stdout)

    def tags(self, name: str) -> list[str]:
        try:
            return sorted(self.skopeo("list-tags", f"docker://{self.address}/{name}")["Tags"] or [])
        except subprocess.CalledProcessError as err:
            if "404 (Not Found)" in err.stderr:  # the repository has no tags yet
                return []
            raise

    def push_blob(self, name: str, body: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        request = urllib.request.Request(f"http://{self.address}/v2/{name}/blobs/uploads/", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            location = answer.headers["Location"]
        separator = "&" if "?" in location else "?"
        url = urllib.parse.urljoin(f"http://{self.address}/", location) + f"{separator}digest={digest}"
        put = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(put, timeout=30) as answer:
            assert answer.status == 201, answer.status
        return digest

    def push_tiny_image(self, name: str, tags: list[str], architecture: str = "amd64") -> str:
        """A one-file image pushed once through the API, its manifest PUT under every tag (fast: no engine).

        With no tags it is stored by its digest, as the platform manifests of an index are.
        """
        layer = io.BytesIO()
        with tarfile.open(fileobj=layer, mode="w") as tar:
            info = tarfile.TarInfo("hello")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        layer_gz = gzip.compress(layer.getvalue(), mtime=0)
        config = json.dumps(
            {
                "architecture": architecture,
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer.getvalue()).hexdigest()]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": self.push_blob(name, config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": self.push_blob(name, layer_gz),
                        "size": len(layer_gz),
                    }
                ],
            }
        ).encode()
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        for reference in tags or [digest]:
            self.put_manifest(name, reference, "application/vnd.oci.image.manifest.v1+json", manifest)
        return digest

    def put_manifest(self, name: str, reference: str, media_type: str, body: bytes) -> None:
        put = urllib.request.Request(
            f"http://{self.address}/v2/{name}/manifests/{reference}",
            data=body,
            method="PUT",
            headers={"Content-Type": media_type},
        )
        with urllib.request.urlopen(put, timeout=30) as answer:
            assert answer.status == 201, answer.status

    def push_tiny_index(self, name: str, tag: str, architectures: list[str]) -> dict[str, str]:
        """A tiny image per architecture and, as tag, an OCI index of them with an attestation entry
        (as Docker Hub's official images have); returns platform → manifest digest and `index` → its own.
        """
        entries, digests = [], {}
        for architecture in architectures:
            digest = self.push_tiny_image(name, [], architecture)
            digests[f"linux/{architecture}"] = digest
            entries.append(self.descriptor(name, digest) | {"platform": {"os": "linux", "architecture": architecture}})
        attestation = self.push_tiny_image(name, [], "unknown")
        entries.append(self.descriptor(name, attestation) | {"platform": {"os": "unknown", "architecture": "unknown"}})
        media_type = "application/vnd.oci.image.index.v1+json"
        index = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}).encode()
        self.put_manifest(name, tag, media_type, index)
        return digests | {"index": "sha256:" + hashlib.sha256(index).hexdigest()}

    def descriptor(self, name: str, digest: str) -> dict:
        request = urllib.request.Request(f"http://{self.address}/v2/{name}/manifests/{digest}", method="HEAD")
        request.add_header("Accept", "application/vnd.oci.image.manifest.v1+json")
        with urllib.request.urlopen(request, timeout=30) as answer:
            size = int(answer.headers["Content-Length"])
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size}


class RelayProxy:
    """A loopback proxy in front of a real registry: relays GET and HEAD, and lets `answer` see or change each reply."""

    def __init__(self, upstream: LocalRegistry) -> None:
        target, proxy = upstream.address, self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def relay(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                request = urllib.request.Request(f"http://{target}{self.path}", method=self.command)
                for key in ("Accept", "Authorization"):
                    if self.headers.get(key):
                        request.add_header(key, self.headers[key])
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status, headers, body = answer.status, dict(answer.headers), answer.read()
                except urllib.error.HTTPError as err:
                    status, headers, body = err.code, dict(err.headers), err.read()
                headers, body = proxy.answer(self.command, parts, status, headers, body)
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(key, value)
                # A HEAD answer has no body, but its length is the document's (clients size descriptors by it).
                length = headers.get("Content-Length", "0") if self.command == "HEAD" else str(len(body))
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(
        self, method: str, parts: urllib.parse.SplitResult, status: int, headers: dict, body: bytes
    ) -> tuple[dict, bytes]:
        return headers, body

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PagingProxy(RelayProxy):
    """Tag listing a page at a time, as the OCI distribution spec and hosted registries do.

    Debian's docker-registry (distribution 2.8) ignores `n` and answers every tag at once;
    paging came with distribution 3. This loopback proxy pages the real registry's full,
    lexically sorted list by `n`/`last` with a relative `Link: <…>; rel="next"`, and passes
    every other request through unchanged.
    """

    def answer(
        self, method: str, parts: urllib.parse.SplitResult, status: int, headers: dict, body: bytes
    ) -> tuple[dict, bytes]:
        if not parts.path.endswith("/tags/list") or status != 200:
            return headers, body
        listing = json.loads(body)
        query = urllib.parse.parse_qs(parts.query)
        size = int(query.get("n", ["100"])[0])  # a server-chosen page when the client names none
        last = query.get("last", [""])[0]
        tags = sorted(t for t in listing.get("tags") or [] if t > last)
        page, rest = tags[:size], tags[size:]
        if rest:
            following = urllib.parse.urlencode({"n": size, "last": page[-1]})
            headers["Link"] = f'<{parts.path}?{following}>; rel="next"'
        return headers, json.dumps({"name": listing["name"], "tags": page}).encode()


class MovingTagProxy(RelayProxy):
    """A tag that moves right after its first reader got it: someone pushes a new base mid-run.

    The first GET of `name:tag` is answered as the registry has it; before that answer goes
    out, `tag` is pointed at the manifest `moved_to` names, so every later reader gets that.
    """

    def __init__(self, upstream: LocalRegistry, name: str, tag: str, moved_to: str) -> None:
        self.upstream, self.name, self.tag, self.moved_to = upstream, name, tag, moved_to
        self.moved = threading.Event()
        super().__init__(upstream)

    def answer(
        self, method: str, parts: urllib.parse.SplitResult, status: int, headers: dict, body: bytes
    ) -> tuple[dict, bytes]:
        if method == "GET" and parts.path == f"/v2/{self.name}/manifests/{self.tag}" and not self.moved.is_set():
            self.moved.set()
            manifest = f"http://{self.upstream.address}/v2/{self.name}/manifests/{self.moved_to}"
            request = urllib.request.Request(manifest, headers={"Accept": MANIFEST_TYPES})
            with urllib.request.urlopen(request, timeout=30) as moved:
                media_type, moved_body = moved.headers["Content-Type"], moved.read()
            self.upstream.put_manifest(self.name, self.tag, media_type, moved_body)
        return headers, body
