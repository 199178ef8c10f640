"""Provision the local Docker engine: a BuildKit-capable client, a running daemon, a base image.

On a fresh Debian/Ubuntu host (as root) this installs the distribution's docker.io and starts
dockerd; where no registry is reachable it bootstraps the base image with debootstrap from the
mirror apt already uses, trimmed like a slim image. Everything it does, it says on stdout.

    python3 -m ci.engines.provision [--base-image IMAGE] [PIPELINE ARGS…]

does that ahead of a run, with the standard library alone (this module and what it imports need
no package of the pipeline's venv): `scripts/dev pipeline` runs it while it creates the venv.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ci.core.baseimage import DEFAULT_BASE_IMAGE, LOCAL_BASE_REPO
from ci.core.errors import EngineError, PipelineError, RegistryError, RegistryUnreachable
from ci.core.files import exclusive
from ci.core.log import progress, say
from ci.core.platforms import architecture, foreign, host_platform, parse_platforms, tag_suffix
from ci.engines.select import choose_engine
from ci.oci.base import resolve_digest

DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")
# What Debian and Ubuntu images set; a loaded archive has no daemon default to fall back on.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOCKERD_LOG = Path("/var/log/dar-backup-ci-dockerd.log")
# What an official slim image leaves out; none of it is needed at run time.
TRIM_PATHS = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "var/log",
)
# Where the runs on this machine take turns: two at once (.ci/run's test workers, on a fresh
# machine) would both run apt-get (one failing on dpkg's lock), start dockerd or bootstrap one base.
# scripts/dev runs its apt-get under the same "apt" lock.
LOCK_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())


@contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """name's lock on this machine, saying so when another run holds it."""
    lock = LOCK_DIR / f"dar-backup-ci-{re.sub(r'[^A-Za-z0-9.-]+', '-', name)}.lock"
    with exclusive(lock, lambda: say("engine", f"waiting for another run's {name}")):
        yield


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str


def parse_apt_sources(one_line: str, deb822: str) -> list[AptSource]:
    """`deb` entries of sources.list (one-line) and *.sources (deb822) text, in file order."""
    found: list[AptSource] = []
    for line in one_line.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            found.append(AptSource(words[1].rstrip("/"), words[2]))
    for stanza in re.split(r"\n\s*\n", deb822):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
            continue
        for uri in fields.get("uris", "").split():
            found.extend(AptSource(uri.rstrip("/"), suite) for suite in fields.get("suites", "").split())
    return found


def pick_bootstrap_source(sources: Iterable[AptSource], known_suites: set[str]) -> AptSource:
    """The first source whose suite debootstrap knows (so not -updates, -security or a vendor repo)."""
    for source in sources:
        if source.suite in known_suites:
            return source
    raise EngineError("no apt source names a release debootstrap knows; cannot bootstrap a base image")


def read_host_apt_sources() -> list[AptSource]:
    etc = Path("/etc/apt")
    one_line = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    deb822 = sorted((etc / "sources.list.d").glob("*.sources"))
    return parse_apt_sources(_read_all(one_line), _read_all(deb822))


def _read_all(paths: Iterable[Path]) -> str:
    return "\n\n".join(p.read_text() for p in paths if p.is_file())


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def apt_install(*packages: str) -> None:
    """packages installed, one apt-get at a time on this machine; what is installed (by another
    run while this one waited, too) is not installed again."""
    missing = [package for package in packages if not dpkg_installed(package)]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise EngineError(f"{', '.join(missing)} missing and cannot be installed (needs root and apt-get)")
    with machine_lock("apt"):
        missing = [package for package in missing if not dpkg_installed(package)]
        if not missing:
            return
        say("engine", f"installing {' '.join(missing)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
            with progress("engine", " ".join(argv[:2])):
                done = subprocess.run(argv, env=env, check=False, stdout=subprocess.DEVNULL)
            if done.returncode != 0:
                raise EngineError(f"{' '.join(argv)} failed with exit code {done.returncode}")


def dpkg_installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    return _run(["dpkg-query", "-W", "-f", "${Status}", package]).stdout == "install ok installed"


def client_has_buildkit(client: str) -> bool:
    """True when `client build` can use BuildKit: a buildx plugin, or a pre-23 CLI's built-in builder."""
    if _run([client, "buildx", "version"]).returncode == 0:
        return True
    match = re.search(r"version (\d+)\.", _run([client, "--version"]).stdout)
    return match is not None and int(match.group(1)) < 23


def find_client() -> str | None:
    candidates = [os.environ.get("DAR_BACKUP_CI_DOCKER"), "/usr/bin/docker", shutil.which("docker")]
    for candidate in dict.fromkeys(c for c in candidates if c):
        if os.access(candidate, os.X_OK) and client_has_buildkit(candidate):
            return candidate
    return None


def ensure_client() -> str:
    client = find_client()
    if client is None:
        apt_install("docker.io")
        client = find_client()
    if client is None:
        raise EngineError("no docker client with BuildKit (tried DAR_BACKUP_CI_DOCKER, /usr/bin/docker, PATH)")
    return client


def ensure_daemon(client: str, wait_seconds: float = 60.0) -> None:
    if _run([client, "info"]).returncode == 0:
        return
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not os.access(dockerd, os.X_OK):
        apt_install("docker.io")
    say("engine", f"starting dockerd (log: {DOCKERD_LOG})")
    with DOCKERD_LOG.open("ab") as log:
        subprocess.Popen([dockerd], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if _run([client, "info"]).returncode == 0:
            say("engine", "dockerd is up")
            return
        time.sleep(1)
    raise EngineError(f"dockerd did not answer within {wait_seconds:.0f}s; see {DOCKERD_LOG}")


def rootfs_workdir() -> tempfile.TemporaryDirectory[str]:
    # /var/tmp: a rootfs and its archive are hundreds of MB, too much for a tmpfs /tmp.
    return tempfile.TemporaryDirectory(prefix="dar-backup-rootfs-", dir="/var/tmp")


def bootstrap_base(client: str, tag: str, source: AptSource, platform: str) -> None:
    with rootfs_workdir() as tmp:
        load_base(client, bootstrap_archive(Path(tmp), tag, source, platform), tag, platform)


def bootstrap_archive(tmp: Path, tag: str, source: AptSource, platform: str) -> Path:
    """An image archive of platform's base, bootstrapped, trimmed and written in tmp: no engine needed."""
    arch = architecture(platform)
    say(
        "engine",
        f"no registry reachable: bootstrapping {tag} with debootstrap {source.suite} ({arch}) from {source.uri}",
    )
    rootfs = tmp / "rootfs"
    argv = ["debootstrap", "--variant=minbase", f"--arch={arch}", source.suite, str(rootfs), source.uri]
    with progress("engine", f"debootstrap {source.suite} ({arch})"):
        done = _run(argv)
    if done.returncode != 0:
        raise EngineError(f"debootstrap failed: {done.stderr.strip().splitlines()[-1:]}")
    trim_rootfs(rootfs)
    archive = tmp / "image.tar"
    write_image_archive(rootfs, archive, tag, arch)
    return archive


def load_base(client: str, archive: Path, tag: str, platform: str) -> None:
    # `docker load` keeps the architecture the config names; `docker import` would record the host's.
    with progress("engine", f"docker load {tag}"):
        loaded = _run([client, "load", "-q", "-i", str(archive)])
    if loaded.returncode != 0:
        raise EngineError(f"docker load of the bootstrapped base failed: {loaded.stderr.strip()}")
    say("engine", f"loaded {tag} ({platform})")


def write_image_archive(rootfs: Path, archive: Path, tag: str, arch: str) -> None:
    """A one-layer docker-archive (what `docker save` writes) of rootfs, its config naming arch."""
    layer = archive.with_name("layer.tar")
    subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(layer), "."], check=True)
    digest = hashlib.sha256()
    with layer.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Env": [f"PATH={IMAGE_PATH}"], "Cmd": ["bash"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest.hexdigest()}"]},
            "history": [{"created_by": f"debootstrap --variant=minbase --arch={arch}"}],
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer/layer.tar"]}]).encode()
    with tarfile.open(archive, "w") as out:
        out.add(layer, "layer/layer.tar")
        for name, data in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    layer.unlink()


QEMU_NAMES = {"arm64": "aarch64", "amd64": "x86_64"}
BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")


def emulation_enabled(arch: str) -> bool:
    entry = BINFMT_MISC / f"qemu-{QEMU_NAMES[arch]}"
    return entry.is_file() and entry.read_text().startswith("enabled")


def ensure_emulation(platform: str) -> None:
    """Run a foreign platform's binaries through qemu: installed and enabled only when asked for."""
    arch = architecture(platform)
    if emulation_enabled(arch):
        return
    with machine_lock("emulation"):
        if not emulation_enabled(arch):
            enable_emulation(platform, arch)


def enable_emulation(platform: str, arch: str) -> None:
    say("engine", f"{platform} is foreign to this host: enabling emulation (qemu-user-static, binfmt-support)")
    if not Path("/usr/sbin/update-binfmts").exists() or not list(Path("/usr/bin").glob("qemu-*-static")):
        apt_install("qemu-user-static", "binfmt-support")
    if not (BINFMT_MISC / "register").exists():
        mounted = _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_MISC)])
        if mounted.returncode != 0:
            raise EngineError(f"cannot mount binfmt_misc for emulation: {mounted.stderr.strip()}")
    _run(["update-binfmts", "--enable", f"qemu-{QEMU_NAMES[arch]}"])
    if not emulation_enabled(arch):
        raise EngineError(f"emulation of {platform} is not enabled (binfmt_misc has no qemu-{QEMU_NAMES[arch]})")
    say("engine", f"emulation of {platform} enabled")


def trim_rootfs(rootfs: Path) -> None:
    for relative in TRIM_PATHS:
        for child in (rootfs / relative).glob("*"):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    for locale in (rootfs / "usr/share/locale").glob("*"):
        if locale.is_dir():
            shutil.rmtree(locale)


def debian_suite(requested: str, known_suites: set[str]) -> str | None:
    """`trixie` for `debian:trixie-slim` (or `docker.io/library/debian:trixie`); None for other images."""
    name, _, tag = requested.partition("@")[0].rpartition(":")
    if name.removeprefix("docker.io/").removeprefix("library/") != "debian":
        return None
    suite = tag.removesuffix("-slim")
    return suite if suite in known_suites else None


def image_platform(client: str, ref: str) -> str | None:
    done = _run([client, "image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", ref])
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_base_image(client: str, requested: str, platform: str, host: str) -> str:
    """The tag of the requested base for platform if present or pullable, else of a local bootstrap.

    A `debian:SUITE` image is bootstrapped as that suite, anything else (ubuntu:24.04) as the
    host's own release, both from the mirror apt already uses. The host's bootstrap is tagged
    by suite alone, a foreign platform's by suite and architecture.
    """
    if image_platform(client, requested) == platform:
        return requested
    if _run([client, "pull", "-q", "--platform", platform, requested]).returncode == 0:
        return requested
    source, tag = bootstrap_plan(requested, platform, host)
    with machine_lock(tag):
        reused_or_bootstrapped(client, requested, tag, source, platform)
    return tag


def reused_or_bootstrapped(client: str, requested: str, tag: str, source: AptSource, platform: str) -> None:
    """Under tag's lock: the base an earlier run bootstrapped, or one bootstrapped now."""
    if image_platform(client, tag) == platform:
        say("engine", f"{requested} cannot be pulled; reusing the bootstrapped {tag}")
    else:
        bootstrap_base(client, tag, source, platform)


def bootstrap_plan(requested: str, platform: str, host: str) -> tuple[AptSource, str]:
    """What a local base of requested is bootstrapped from, and its tag (debootstrap installed if missing)."""
    known = {p.name for p in DEBOOTSTRAP_SCRIPTS.glob("*")} if DEBOOTSTRAP_SCRIPTS.is_dir() else set()
    if not known:
        apt_install("debootstrap")
        known = {p.name for p in DEBOOTSTRAP_SCRIPTS.glob("*")}
    source = pick_bootstrap_source(read_host_apt_sources(), known)
    suite = debian_suite(requested, known)
    if suite is not None:
        source = AptSource(source.uri, suite)
    return source, f"{LOCAL_BASE_REPO}:{source.suite}{tag_suffix(platform, host)}"


def started_engine() -> str:
    """The client of a running daemon, installing and starting what is missing (one run at a time)."""
    with machine_lock("engine"):
        client = ensure_client()
        ensure_daemon(client)
    return client


def engine_beside_base(requested: str, host: str) -> str:
    """On a machine with no engine (so no base either): the engine installed and started while the
    base is bootstrapped, which needs no engine; on a fresh machine these two are most of the wait."""
    source, tag = bootstrap_plan(requested, host, host)
    with machine_lock(tag):
        if find_client() is not None:
            # Another run installed the engine while this one waited for the base, and may have made it.
            client = started_engine()
            reused_or_bootstrapped(client, requested, tag, source, host)
            return client
        with (
            rootfs_workdir() as tmp,
            ThreadPoolExecutor(2, thread_name_prefix="provision") as pool,
        ):
            engine = pool.submit(started_engine)
            archive = pool.submit(bootstrap_archive, Path(tmp), tag, source, host)
            client = engine.result()
            load_base(client, archive.result(), tag, host)
    return client


def registry_unreachable(requested: str, host: str) -> bool:
    """True when no registry answers for requested, so the run needs a local base of it.

    A registry that answers is left to the run (BuildKit pulls the base itself, and a refusal is
    the run's to report).
    """
    try:
        resolve_digest(requested, host, None)
    except RegistryUnreachable as err:
        say("engine", f"{requested}: {err}; making a local image of it")
        return True
    except RegistryError:
        return False
    return False


def prepare(requested: str, platforms: Sequence[str]) -> None:
    """The engine, emulation for each foreign platform, and each platform's base where no registry
    serves it, as a run building platforms will want them."""
    host = host_platform()
    local_base = registry_unreachable(requested, host)
    if local_base and host in platforms and find_client() is None:
        client = engine_beside_base(requested, host)
        platforms = foreign(platforms, host)
    else:
        client = started_engine()
    # The host's part first: a foreign platform that cannot be emulated leaves it ready.
    for platform in sorted(platforms, key=lambda platform: platform != host):
        if platform != host:
            ensure_emulation(platform)
        if local_base:
            ensure_base_image(client, requested, platform, host)


def main(argv: Sequence[str] | None = None) -> int:
    """Reads what of the pipeline's arguments it needs; nothing to do for a run on Dagger.

    `--platform` (or DAR_BACKUP_PLATFORMS) as the pipeline takes it; without either, the host's
    platform only (the run makes a release's other platforms ready itself).
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--engine", default=os.environ.get("DAR_BACKUP_CI_ENGINE", "auto"))
    parser.add_argument("--base-image", default=os.environ.get("BASE_IMAGE") or DEFAULT_BASE_IMAGE)
    parser.add_argument("--platform", default=os.environ.get("DAR_BACKUP_PLATFORMS"))
    args, _ = parser.parse_known_args(argv)
    try:
        platforms = parse_platforms(args.platform) if args.platform else (host_platform(),)
        if choose_engine(args.engine, os.environ)[0] == "docker":
            prepare(args.base_image, platforms)
    except PipelineError as err:
        # The run itself tries again and stops with this same error, in its report.
        say("engine", f"not ready ahead of the run: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
