"""A real registry for the release tests: Debian's docker-registry (distribution) on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
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
    process: subprocess.Popen[bytes] | None = None

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
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n" + auth
        )
        return config

    def start(self) -> None:
        binary = shutil.which("docker-registry")
        assert binary, "docker-registry is not installed (scripts/dev test installs it)"
        log = (self.root / "registry.log").open("ab")
        self.process = subprocess.Popen([binary, "serve", str(self.write_config())], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://{self.address}/v2/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # 401 from an auth registry: it is up
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"docker-registry did not start on {self.address}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

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

    def push_tiny_image(self, name: str, tags: list[str]) -> str:
        """A one-file image pushed once through the API, its manifest PUT under every tag (fast: no engine)."""
        layer = io.BytesIO()
        with tarfile.open(fileobj=layer, mode="w") as tar:
            info = tarfile.TarInfo("hello")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        layer_gz = gzip.compress(layer.getvalue(), mtime=0)
        config = json.dumps(
            {
                "architecture": "amd64",
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
        for tag in tags:
            put = urllib.request.Request(
                f"http://{self.address}/v2/{name}/manifests/{tag}",
                data=manifest,
                method="PUT",
                headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
            )
            with urllib.request.urlopen(put, timeout=30) as answer:
                assert answer.status == 201, answer.status
        return "sha256:" + hashlib.sha256(manifest).hexdigest()


class PagingProxy:
    """Tag listing a page at a time, as the OCI distribution spec and hosted registries do.

    Debian's docker-registry (distribution 2.8) ignores `n` and answers every tag at once;
    paging came with distribution 3. This loopback proxy pages the real registry's full,
    lexically sorted list by `n`/`last` with a relative `Link: <…>; rel="next"`, and passes
    every other request through unchanged.
    """

    def __init__(self, upstream: LocalRegistry) -> None:
        target = upstream.address

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
                if parts.path.endswith("/tags/list") and status == 200:
                    headers, body = self.page(parts, json.loads(body), headers)
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def page(self, parts: urllib.parse.SplitResult, listing: dict, headers: dict) -> tuple[dict, bytes]:
                query = urllib.parse.parse_qs(parts.query)
                size = int(query.get("n", ["100"])[0])  # a server-chosen page when the client names none
                last = query.get("last", [""])[0]
                tags = sorted(t for t in listing.get("tags") or [] if t > last)
                page, rest = tags[:size], tags[size:]
                if rest:
                    following = urllib.parse.urlencode({"n": size, "last": page[-1]})
                    headers["Link"] = f'<{parts.path}?{following}>; rel="next"'
                return headers, json.dumps({"name": listing["name"], "tags": page}).encode()

            do_GET = do_HEAD = relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
