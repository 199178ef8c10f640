"""A real registry for the release tests: Debian's docker-registry (distribution) on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
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
