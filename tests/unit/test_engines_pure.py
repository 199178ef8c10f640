import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from ci.core.errors import EngineError, UsageError
from ci.engines.dagger import loopback_address
from ci.engines.docker import RunOptions, build_argv, run_argv
from ci.engines.provision import AptSource, debian_suite, parse_apt_sources, pick_bootstrap_source, write_image_archive
from ci.engines.seam import BuildSpec, Image, Mount, Volume
from ci.engines.select import choose_engine
from ci.oci.auth import SecretRef
from ci.stages.build import build_secrets


@pytest.mark.parametrize(
    ("requested", "env", "engine"),
    [
        ("auto", {"DAGGER_SESSION_PORT": "4321"}, "dagger"),
        ("auto", {}, "docker"),
        ("docker", {"DAGGER_SESSION_PORT": "4321"}, "docker"),
        ("dagger", {}, "dagger"),
    ],
)
def test_engine_choice(requested, env, engine):
    assert choose_engine(requested, env)[0] == engine


def test_unknown_engine_is_refused():
    with pytest.raises(UsageError, match=r"unknown engine .podman."):
        choose_engine("podman", {})


ONE_LINE = """
# comment
deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main
deb-src http://mirror.example/debian bookworm main
deb https://vendor.example/apt stable main
"""
DEB822 = """Types: deb
# http://snapshot.example/archive
URIs: http://deb.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://deb.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://off.example/debian
Suites: trixie
"""


def test_apt_sources_in_both_formats():
    sources = parse_apt_sources(ONE_LINE, DEB822)
    assert sources == [
        AptSource("http://mirror.example/debian", "bookworm"),
        AptSource("https://vendor.example/apt", "stable"),
        AptSource("http://deb.example/debian", "bookworm"),
        AptSource("http://deb.example/debian", "bookworm-updates"),
        AptSource("http://deb.example/debian-security", "bookworm-security"),
    ]


def test_bootstrap_source_is_the_first_release_debootstrap_knows():
    sources = parse_apt_sources("deb https://vendor.example/apt stable main", DEB822)
    assert pick_bootstrap_source(sources, {"bookworm", "trixie"}) == AptSource("http://deb.example/debian", "bookworm")
    with pytest.raises(EngineError, match="debootstrap knows"):
        pick_bootstrap_source(sources, {"noble"})


def test_build_argv_passes_secret_files_by_path_only(tmp_path):
    spec = BuildSpec(
        "final",
        {"DAR_BACKUP_VERSION": "1.1.11"},
        {"org.opencontainers.image.version": "1.2.3"},
        {"pip_cert": Path("/etc/ca.pem")},
        tag="dar-backup:1.2.3",
    )
    argv = build_argv("/usr/bin/docker", spec, "docker/Dockerfile", "/tmp/iid", ".")
    joined = " ".join(argv)
    assert "--target final" in joined and "--build-arg DAR_BACKUP_VERSION=1.1.11" in joined
    assert "--label org.opencontainers.image.version=1.2.3" in joined
    assert argv[argv.index("--secret") + 1] == "id=pip_cert,src=/etc/ca.pem"
    assert argv[-1] == "." and "--platform" not in argv
    arm64 = build_argv("/usr/bin/docker", dataclasses.replace(spec, platform="linux/arm64"), "f", "/tmp/iid", ".")
    assert arm64[-3:] == ["--platform", "linux/arm64", "."]


def test_run_argv_isolates_the_container():
    image = Image("sha256:abc", "final")
    mounts = [Mount(Volume("dbci-1-data"), "/data", read_only=True), Mount(Volume("dbci-1-b"), "/b")]
    argv = run_argv("docker", "dbci-1-3", "1", image, ["dar", "-t", "x"], RunOptions(mounts, {"TZ": "UTC"}))
    assert argv[:4] == ["docker", "run", "--rm", "--network"] and argv[4] == "none"
    assert "type=volume,src=dbci-1-data,dst=/data,volume-nocopy,readonly" in argv
    assert argv[argv.index("--log-driver") + 1] == "none"
    assert argv[-5:] == ["--entrypoint", "dar", "sha256:abc", "-t", "x"]
    with_entrypoint = run_argv("docker", "n", "1", image, ["-F"], RunOptions(user="1234:2345", use_entrypoint=True))
    assert with_entrypoint[-4:] == ["--user", "1234:2345", "sha256:abc", "-F"]
    arm64 = Image("sha256:def", "final (linux/arm64)", platform="linux/arm64")
    emulated = run_argv("docker", "n", "1", arm64, ["dar", "--version"], RunOptions())
    assert emulated[-6:] == ["--platform", "linux/arm64", "--entrypoint", "dar", "sha256:def", "--version"]


def test_a_bootstrapped_rootfs_becomes_an_archive_whose_config_names_the_architecture(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/os-release").write_text("ID=debian\n")
    archive = tmp_path / "image.tar"
    write_image_archive(rootfs, archive, "dar-backup-local-base:bookworm-arm64", "arm64")
    with tarfile.open(archive) as saved:
        (entry,) = json.loads(saved.extractfile("manifest.json").read())
        config_bytes = saved.extractfile(entry["Config"]).read()
        layer = saved.extractfile(entry["Layers"][0]).read()
    config = json.loads(config_bytes)
    assert entry["RepoTags"] == ["dar-backup-local-base:bookworm-arm64"]
    assert entry["Config"] == hashlib.sha256(config_bytes).hexdigest() + ".json"
    assert (config["architecture"], config["os"]) == ("arm64", "linux")
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Env"][0].startswith("PATH=/usr/local/sbin:")
    with tarfile.open(fileobj=io.BytesIO(layer)) as rootfs_tar:
        assert rootfs_tar.extractfile("./etc/os-release").read() == b"ID=debian\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.tar", "rootfs"]


def test_secret_refs_are_checked():
    with pytest.raises(UsageError, match="env://NAME or file://PATH"):
        SecretRef("plaintext-password")


def test_build_secret_only_when_the_host_has_a_ca_bundle(tmp_path: Path):
    assert build_secrets({}) == {}
    assert build_secrets({"PIP_CERT": str(tmp_path / "missing.pem")}) == {}
    cert = tmp_path / "ca.pem"
    cert.write_text("x")
    assert build_secrets({"PIP_CERT": str(cert)}) == {"pip_cert": cert}


def test_dry_run_outside_release_is_refused_with_one_line(capsys, tmp_path):
    from ci.cli import main

    assert main(["test", "--dry-run", "--report-dir", str(tmp_path)], env={}) == 2
    assert capsys.readouterr().err == "error: --dry-run applies to release and refresh only, not test\n"


def test_unusable_report_dir_is_refused_before_the_run(capsys, tmp_path):
    from ci.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["base", "--report-dir", str(blocker / "reports")], env={}) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot use {blocker / 'reports'} as --report-dir: ")


def test_run_argv_passes_secrets_by_name_and_files_read_only():
    options = RunOptions(binds=[("/tmp/k", "/run/secrets/cosign.key")], inherited_env=["COSIGN_PASSWORD"], network=True)
    argv = run_argv("docker", "n", "1", Image("sha256:abc", "tools"), ["cosign", "sign"], options)
    assert argv[argv.index("--network") + 1] == "host"
    assert "type=bind,src=/tmp/k,dst=/run/secrets/cosign.key,readonly" in argv
    assert argv[argv.index("COSIGN_PASSWORD") - 1] == "-e"
    assert not any(arg.startswith("COSIGN_PASSWORD=") for arg in argv)


@pytest.mark.parametrize(
    ("requested", "suite"),
    [
        ("debian:trixie-slim", "trixie"),
        ("docker.io/library/debian:bookworm", "bookworm"),
        ("debian:trixie-slim@sha256:" + "a" * 64, "trixie"),
        ("debian:nosuchsuite", None),
        ("ubuntu:24.04", None),
        ("registry.example.org/debian:trixie", None),
    ],
)
def test_a_debian_base_is_bootstrapped_as_its_own_suite(requested, suite):
    assert debian_suite(requested, {"bookworm", "trixie", "noble"}) == suite


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:5000", ("127.0.0.1", 5000)),
        ("localhost:5001", ("localhost", 5001)),
        ("127.0.0.1", ("127.0.0.1", 80)),
    ],
)
def test_a_loopback_registry_is_relayed_at_its_host_and_port_plain_http_by_default(address, expected):
    assert loopback_address(address) == expected


def test_an_ipv6_loopback_registry_is_refused_on_dagger_in_one_line():
    # The relay listens with socat's TCP (IPv4) and Host.service dials `host:port` unbracketed.
    with pytest.raises(EngineError, match=r"^\[::1\]:5000 cannot be relayed on Dagger"):
        loopback_address("[::1]:5000")
