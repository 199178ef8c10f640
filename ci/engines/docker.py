"""The local Docker engine adapter: BuildKit builds, `docker run --network none`, named volumes.

Every container and volume carries the run's label, so `close()` removes them all, also after
a failure or Ctrl-C. Secrets reach builds as BuildKit secrets only.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import anyio

from ci.core.baseimage import BaseImage
from ci.core.errors import EngineError, RegistryError, RegistryUnreachable
from ci.core.log import say
from ci.core.platforms import host_platform
from ci.engines.docker_push import push_saved_image
from ci.engines.provision import ensure_base_image, ensure_emulation, started_engine
from ci.engines.seam import BuildSpec, Image, Mount, Pushed, RunResult, Volume
from ci.oci.auth import RegistryAuth, SecretRef, read_secret
from ci.oci.base import resolve_digest
from ci.oci.media import INDEX, Descriptor, image_index
from ci.oci.registry import Registry

RUN_LABEL = "dar-backup-ci.run"


def build_argv(client: str, spec: BuildSpec, dockerfile: str, iidfile: str, context: str) -> list[str]:
    argv = [client, "build", "--progress=plain", "-f", dockerfile, "--target", spec.target, "--iidfile", iidfile]
    for key, value in spec.build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    for key, value in spec.labels.items():
        argv += ["--label", f"{key}={value}"]
    for secret_id, path in spec.secret_files.items():
        argv += ["--secret", f"id={secret_id},src={path}"]
    if spec.tag:
        argv += ["--tag", spec.tag]
    if spec.platform:
        argv += ["--platform", spec.platform]
    return [*argv, context]


@dataclass(frozen=True)
class RunOptions:
    """How a container runs, besides its image and command."""

    mounts: Sequence[Mount] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    use_entrypoint: bool = False
    # (host path, container path) pairs mounted read-only: files and secret files.
    binds: Sequence[tuple[str, str]] = ()
    # Variables whose values the docker client passes from its own environment, never in argv.
    inherited_env: Sequence[str] = ()
    # The host's network (a registry on 127.0.0.1); otherwise none at all.
    network: bool = False


def run_argv(client: str, name: str, run_id: str, image: Image, argv: Sequence[str], options: RunOptions) -> list[str]:
    network = "host" if options.network else "none"
    cmd = [client, "run", "--rm", "--network", network, "--name", name, "--label", f"{RUN_LABEL}={run_id}"]
    # The output comes back through the attached streams; a log file of it (json-file, the
    # default) would be written at every start and never read.
    cmd += ["--log-driver", "none"]
    for mount in options.mounts:
        # volume-nocopy: an empty volume stays empty and keeps its owner, as Dagger cache volumes do.
        spec = f"type=volume,src={mount.volume.name},dst={mount.path},volume-nocopy"
        cmd += ["--mount", spec + (",readonly" if mount.read_only else "")]
    for source, target in options.binds:
        cmd += ["--mount", f"type=bind,src={source},dst={target},readonly"]
    for key, value in options.env.items():
        cmd += ["-e", f"{key}={value}"]
    for key in options.inherited_env:
        cmd += ["-e", key]
    if image.platform:
        # A foreign image then runs emulated, without Docker's platform-mismatch warning.
        cmd += ["--platform", image.platform]
    user, use_entrypoint = options.user, options.use_entrypoint
    if user is not None:
        cmd += ["--user", user]
    if use_entrypoint:
        return [*cmd, image.ref, *argv]
    return [*cmd, "--entrypoint", argv[0], image.ref, *argv[1:]]


def _decode(data: bytes) -> str:
    # surrogateescape keeps non-UTF-8 file names intact through manifests.
    return data.decode("utf-8", "surrogateescape")


class DockerEngine:
    name = "docker"

    def __init__(self, run_id: str, context: Path, client: str) -> None:
        self.run_id = run_id
        self.context = context
        self.client = client
        self.host = host_platform()
        self._names = count(1)
        # The id tag of each local base resolved (what a build goes FROM) → the image id it was made of.
        self._local_bases: dict[str, str] = {}

    @classmethod
    def open(cls, run_id: str, context: Path) -> DockerEngine:
        return cls(run_id, context, started_engine())

    async def resolve_base(self, requested: str, platform: str, auth: RegistryAuth | None) -> BaseImage:
        if platform != self.host:
            ensure_emulation(platform)
        try:
            digest = await anyio.to_thread.run_sync(resolve_digest, requested, platform, auth)
        except RegistryUnreachable as err:
            # No registry answered: this engine makes do with an image of its own (present,
            # pulled by the daemon, or bootstrapped), as the e2e suite does without a network.
            # A registry that answered (429, 5xx, 401 …) stops the run instead: what it refused
            # is no reason to build on whatever the daemon keeps under that name.
            say("engine", f"{requested}: {err}; building FROM a local image of it")
            tag = ensure_base_image(self.client, requested, platform, self.host)
            inspect = [self.client, "image", "inspect", "-f", "{{.Id}}", tag]
            image_id = (await self._checked(inspect, f"inspecting {tag}")).strip()
            base = BaseImage(tag, local_id=image_id)
            await self._checked([self.client, "tag", image_id, base.build_from], f"tagging {tag}")
            say("engine", f"{tag} is {image_id}: building FROM {base.build_from}")
            self._local_bases[base.build_from] = image_id
            return base
        return BaseImage(requested, digest=digest)

    async def _layers(self, ref: str) -> list[str]:
        out = await self._checked(
            [self.client, "image", "inspect", "-f", "{{json .RootFS.Layers}}", ref], f"reading the layers of {ref}"
        )
        return list(json.loads(out) or [])

    async def _exec(
        self, argv: Sequence[str], *, stream: bool = False, extra_env: Mapping[str, str] | None = None
    ) -> RunResult:
        env = {**os.environ, "DOCKER_BUILDKIT": "1", **(extra_env or {})}
        if stream:
            done = await anyio.run_process(list(argv), stdout=sys.stderr, stderr=sys.stderr, check=False, env=env)
            return RunResult(done.returncode, "", "")
        done = await anyio.run_process(list(argv), check=False, env=env)
        return RunResult(done.returncode, _decode(done.stdout), _decode(done.stderr))

    async def _checked(self, argv: Sequence[str], what: str) -> str:
        done = await self._exec(argv)
        if not done.ok:
            raise EngineError(f"{what} failed: {done.tail(3)}")
        return done.stdout

    async def build(self, spec: BuildSpec) -> Image:
        with tempfile.TemporaryDirectory(prefix="dar-backup-ci-") as tmp:
            iidfile = str(Path(tmp) / "iid")
            argv = build_argv(self.client, spec, str(self.context / spec.dockerfile), iidfile, str(self.context))
            done = await self._exec(argv, stream=True)
            if not done.ok:
                raise EngineError(f"docker build --target {spec.target} failed with exit code {done.exit_code}")
            image_id = Path(iidfile).read_text().strip()
        # A tag is the name users run it by (a foreign platform's says so: dar-backup:X-arm64).
        description = spec.tag or f"{spec.target} {image_id[:19]} ({spec.platform or 'host'})"
        # Built FROM a local base's id tag: its layers must be the first of the image, or the
        # tag named another image by the time BuildKit read it, and the label would be a lie.
        for base_id in {self._local_bases[v] for v in spec.build_args.values() if v in self._local_bases}:
            base_layers = await self._layers(base_id)
            if (await self._layers(image_id))[: len(base_layers)] != base_layers:
                raise EngineError(f"{description} is not built on the local base {base_id} it was to be built FROM")
        return Image(image_id, description, image_id, spec.platform)

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
        # `--network host` (network=True) already reaches the host's loopback as it is.
        name = f"dbci-{self.run_id}-{next(self._names)}"
        with tempfile.TemporaryDirectory(prefix="dar-backup-ci-run-") as tmp:
            binds: list[tuple[str, str]] = []
            inherited: dict[str, str] = {}
            for number, (path, text) in enumerate((files or {}).items()):
                source = Path(tmp) / f"file-{number}"
                source.write_text(text)
                source.chmod(0o644)
                binds.append((str(source), path))
            for number, (key, ref) in enumerate((secrets or {}).items()):
                if not key.startswith("/"):
                    inherited[key] = read_secret(ref)
                elif ref.scheme == "file":
                    binds.append((str(Path(ref.target).resolve()), key))
                else:
                    source = Path(tmp) / f"secret-{number}"
                    source.touch(mode=0o600)
                    source.write_text(read_secret(ref))
                    binds.append((str(source), key))
            options = RunOptions(mounts, env or {}, user, use_entrypoint, binds, list(inherited), network)
            return await self._exec(run_argv(self.client, name, self.run_id, image, argv, options), extra_env=inherited)

    async def volume(self, role: str) -> Volume:
        name = f"dbci-{self.run_id}-{role}"
        # `docker volume create` hands back an existing volume; a new one must be new and empty.
        if (await self._exec([self.client, "volume", "inspect", name])).ok:
            raise EngineError(f"volume {name} exists already; this run asked for a new one")
        await self._checked(
            [self.client, "volume", "create", "--label", f"{RUN_LABEL}={self.run_id}", name], f"creating volume {name}"
        )
        return Volume(name)

    async def version(self) -> str:
        out = await self._checked([self.client, "version", "--format", "{{.Server.Version}}"], "reading the version")
        return out.strip()

    async def labels(self, image: Image, names: Sequence[str]) -> dict[str, str | None]:
        out = await self._checked(
            [self.client, "image", "inspect", "-f", "{{json .Config.Labels}}", image.ref], "reading labels"
        )
        labels = json.loads(out) or {}
        return {name: labels.get(name) for name in names}

    async def _login(self, config_dir: str, auth: RegistryAuth | None) -> None:
        if auth is None:
            return
        password = read_secret(auth.password)
        argv = [self.client, "--config", config_dir, "login", "-u", auth.username, "--password-stdin", auth.address]
        done = await anyio.run_process(
            argv,
            input=password.encode(),
            check=False,
        )
        if done.returncode != 0:
            raise EngineError(f"login to {auth.address} as {auth.username} was refused")

    async def publish(
        self, images: Sequence[Image], repo: str, candidate_tag: str, auth: RegistryAuth | None
    ) -> Pushed:
        # The registry API takes a manifest under its own digest, so no tag is needed: candidate_tag is unused.
        registry = Registry.logged_in(repo, auth)
        pushed: dict[str, Descriptor] = {}
        with tempfile.TemporaryDirectory(prefix="dar-backup-ci-push-", dir="/var/tmp") as tmp:
            for number, image in enumerate(images):
                saved = Path(tmp) / f"image-{number}.tar"
                await self._checked([self.client, "save", "-o", str(saved), image.ref], f"saving {image.description}")
                platform = image.platform or self.host
                try:
                    pushed[platform] = await anyio.to_thread.run_sync(push_saved_image, registry, saved, None)
                except RegistryError as err:
                    raise EngineError(f"pushing {image.description} to {repo}: {err}") from None
                saved.unlink()
        platforms = {platform: descriptor.digest for platform, descriptor in pushed.items()}
        if len(images) == 1:
            return Pushed(next(iter(platforms.values())), platforms)
        body = image_index(pushed)
        index = Descriptor.of(INDEX, body)
        try:
            stored = registry.put_manifest(index.digest, INDEX, body)
        except RegistryError as err:
            raise EngineError(f"pushing the image index to {repo}: {err}") from None
        if stored != index.digest:
            raise EngineError(f"the registry stored the index as {stored}, not {index.digest}")
        return Pushed(index.digest, platforms)

    async def pull(self, ref: str, auth: RegistryAuth | None, platform: str | None = None) -> Image:
        where = ["--platform", platform] if platform else []
        with tempfile.TemporaryDirectory(prefix="dar-backup-ci-auth-") as config_dir:
            await self._login(config_dir, auth)
            await self._checked([self.client, "--config", config_dir, "pull", "-q", *where, ref], f"pulling {ref}")
        image_id = await self._checked([self.client, "image", "inspect", "-f", "{{.Id}}", ref], f"inspecting {ref}")
        return Image(image_id.strip(), ref, image_id.strip(), platform)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            label = f"label={RUN_LABEL}={self.run_id}"
            containers = (await self._exec([self.client, "ps", "-aq", "--filter", label])).stdout.split()
            if containers:
                await self._exec([self.client, "rm", "-f", "-v", *containers])
            volumes = (await self._exec([self.client, "volume", "ls", "-q", "--filter", label])).stdout.split()
            if volumes:
                await self._exec([self.client, "volume", "rm", "-f", *volumes])
