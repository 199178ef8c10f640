"""The engine seam: the few verbs the stages use, shaped so both adapters are thin mappings.

Dagger objects are immutable and lazy, Docker is imperative; the seam speaks in values
(`Image`, `Volume`, `RunResult`) that either adapter can produce and consume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ci.core.baseimage import BaseImage
from ci.oci.auth import RegistryAuth, SecretRef


@dataclass(frozen=True)
class BuildSpec:
    target: str
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    # BuildKit secret mounts by id (`--mount=type=secret,id=…`): files kept out of every layer,
    # but public data (a proxy's CA bundle). Dagger's dockerBuild takes only named secrets, and
    # naming one puts its plaintext in the query, so a password or key must never come here.
    secret_files: Mapping[str, Path] = field(default_factory=dict)
    tag: str | None = None
    dockerfile: str = "docker/Dockerfile"
    # `linux/arm64`; None builds for the engine's own platform.
    platform: str | None = None


@dataclass(frozen=True)
class Image:
    """An image an engine built or pulled; `ref` means something only to that engine."""

    ref: str
    description: str
    image_id: str | None = None
    platform: str | None = None


@dataclass(frozen=True)
class Volume:
    name: str


@dataclass(frozen=True)
class Mount:
    volume: Volume
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class Pushed:
    """What a publish wrote: no tag a user would pull, only the candidate's digest (and its tag, if any).

    `digest` is the manifest's (one image) or the index's (several); `platforms` is each
    platform manifest's digest as the engine pushed it, empty where the engine does not say
    (Dagger reports the index's digest only); `tag` is the candidate tag it was pushed under,
    None when it went up by digest alone.
    """

    digest: str
    platforms: Mapping[str, str] = field(default_factory=dict)
    tag: str | None = None


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 15) -> str:
        """The end of stderr, else of stdout: what a failure message should show."""
        text = self.stderr.strip() or self.stdout.strip()
        return "\n".join(text.splitlines()[-lines:])


class Engine(Protocol):
    name: str

    async def resolve_base(self, requested: str, platform: str, auth: RegistryAuth | None) -> BaseImage:
        """The base to build FROM for platform: its registry digest (read with `ci.oci.base`, auth
        only for its own registry), or where no registry is reachable and the engine can make do
        without one, its own image, marked local. A registry that answers with an error stops it.

        Also readies the engine for the platform: a foreign one is emulated from here on.
        """
        ...

    async def version(self) -> str:
        """The engine's own version (the daemon's or the Dagger engine's), as provenance names it."""
        ...

    async def build(self, spec: BuildSpec) -> Image: ...

    async def run(
        self,
        image: Image,
        argv: Sequence[str],
        *,
        mounts: Sequence[Mount] = (),
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        use_entrypoint: bool = False,
        files: Mapping[str, str] | None = None,
        secrets: Mapping[str, SecretRef] | None = None,
        network: bool = False,
        loopback: str | None = None,
    ) -> RunResult:
        """Run argv in a fresh container; a non-zero exit is a result, not an error.

        `files` are placed read-only at their paths; each secret becomes the file at its key
        when the key is an absolute path, else the environment variable it names — never a
        command-line argument. Only `network=True` containers reach the network (a registry).
        `loopback` (`127.0.0.1:5000`, with `network=True`) is an address on the host's loopback
        the container reaches under that same address: a local registry. The image then
        needs `sh` and `socat` (the tools image has them) wherever the engine cannot share the
        host's network.
        """
        ...

    async def volume(self, role: str) -> Volume:
        """A new, empty volume that lives until `close()`."""
        ...

    async def labels(self, image: Image, names: Sequence[str]) -> dict[str, str | None]:
        """The value of each named label (None where the image has no such label)."""
        ...

    async def publish(
        self, images: Sequence[Image], repo: str, candidate_tag: str, auth: RegistryAuth | None
    ) -> Pushed:
        """Push images to repo as a candidate: by digest where the engine can, else under
        candidate_tag (never a version), so that no tag a user pulls names it yet.

        One image is pushed as its manifest; several (one per platform) as an OCI image index
        whose platform manifests are pushed first, by digest, so nothing names half of them.
        """
        ...

    async def pull(self, ref: str, auth: RegistryAuth | None, platform: str | None = None) -> Image: ...

    async def close(self) -> None:
        """Remove every container and volume this engine created, whatever happened before."""
        ...
