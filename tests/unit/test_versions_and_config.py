from pathlib import Path

import pytest

from ci.cli import main, parser, tag_version
from ci.core.baseimage import BaseImage
from ci.core.config import REPO_ROOT, build_config, created_timestamp, project_license
from ci.core.errors import OutputError, UsageError, VersionError
from ci.core.labels import oci_labels
from ci.core.versions import locked_dar_backup_version, parse_release_version, tool_version
from ci.stages.build import build_args


@pytest.mark.parametrize("good", ["1.2.3", "0.5.6", "10.20.30", "1.0.0-rc.1", "2.0.0-beta.2"])
def test_accepts_semver(good):
    assert str(parse_release_version(good, "image version")) == good


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("latest", "is not a version"),
        ("", "is empty"),
        ("  ", "is empty"),
        ("1.2", "not semver"),
        ("0.5.06", "no leading zeros"),
        ("v1.2.3", "drop the leading 'v'"),
        ("1.2.3.4", "not semver"),
    ],
)
def test_refuses_non_releases_with_the_reason(bad, reason):
    with pytest.raises(VersionError, match=reason):
        parse_release_version(bad, "image version")


def test_locked_version_comes_from_the_hash_locked_file(tmp_path):
    lock = tmp_path / "requirements.txt"
    lock.write_text("argcomplete==3.7.2 \\\n    --hash=sha256:ab\ndar-backup==9.8.7 \\\n    --hash=sha256:cd\n")
    assert locked_dar_backup_version(lock) == "9.8.7"
    lock.write_text("rich==1.0\n")
    with pytest.raises(VersionError):
        locked_dar_backup_version(lock)


def test_repository_lock_pins_dar_backup_with_hashes():
    text = (REPO_ROOT / "docker/requirements.txt").read_text()
    version = locked_dar_backup_version(REPO_ROOT / "docker/requirements.txt")
    block = text.split(f"dar-backup=={version}", 1)[1].split("\n    #", 1)[0]
    assert "--hash=sha256:" in block


@pytest.mark.parametrize(
    ("tool", "output", "version"),
    [
        ("dar", " dar version 2.7.8, Copyright (C) 2002-2022 Denis Corbin\n", "2.7.8"),
        ("dar", "\n dar version 2.7.13, Copyright\n", "2.7.13"),
        ("par2", "par2cmdline version 0.8.1\nCopyright", "0.8.1"),
        ("dar-backup", "dar-backup 1.1.11\ndar-backup source code is here", "1.1.11"),
    ],
)
def test_reads_tool_versions(tool, output, version):
    assert tool_version(tool, output) == version


def test_unreadable_tool_output_is_an_error():
    with pytest.raises(OutputError, match="cannot read a par2 version"):
        tool_version("par2", "bash: par2: command not found")


def config(**overrides):
    values = dict(
        image_version="1.2.3",
        dar_backup_version=None,
        base_image=None,
        repo=None,
        dry_run=False,
        report_dir=Path("r"),
        env={"SOURCE_DATE_EPOCH": "1700000000"},
    )
    values.update(overrides)
    return build_config(**values)


def test_config_defaults_to_the_locked_dar_backup_and_ubuntu():
    run = config()
    assert run.dar_backup_version == locked_dar_backup_version(REPO_ROOT / "docker/requirements.txt")
    assert run.base_image == "ubuntu:24.04"
    assert run.created == "2023-11-14T22:13:20Z"
    assert len(run.run_id) == 8 and run.run_id != config().run_id


def test_source_date_epoch_reaches_the_build_only_when_the_run_sets_it():
    run, base = config(), BaseImage("ubuntu:24.04", digest="sha256:" + "c" * 64)
    assert "SOURCE_DATE_EPOCH" not in build_args(run, base, {})
    assert "SOURCE_DATE_EPOCH" not in build_args(run, base, {"SOURCE_DATE_EPOCH": ""})
    assert build_args(run, base, {"SOURCE_DATE_EPOCH": "1700000000"}) == {
        "BASE_IMAGE": base.build_from,
        "DAR_BACKUP_VERSION": run.dar_backup_version,
        "SOURCE_DATE_EPOCH": "1700000000",
    }


@pytest.mark.parametrize("dar_backup", ["latest", "", "0.0.1"])
def test_config_refuses_a_dar_backup_version_other_than_the_lock(dar_backup):
    with pytest.raises(UsageError):
        config(dar_backup_version=dar_backup)


@pytest.mark.parametrize("repo", ["", "registry/name:tag", " reg/name"])
def test_config_refuses_bad_repos(repo):
    with pytest.raises(UsageError, match="--repo"):
        config(repo=repo)


def test_bad_source_date_epoch_is_refused():
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        created_timestamp({"SOURCE_DATE_EPOCH": "yesterday"})


def test_labels_carry_the_declared_values():
    run = config(repo="127.0.0.1:5000/dar-backup")
    labels = oci_labels(run, BaseImage("ubuntu:24.04", local_id="sha256:" + "1" * 64))
    prefix = "org.opencontainers.image"
    assert labels[f"{prefix}.version"] == "1.2.3"
    assert labels[f"{prefix}.ref.name"] == "127.0.0.1:5000/dar-backup:1.2.3"
    assert labels[f"{prefix}.licenses"] == project_license(REPO_ROOT / "pyproject.toml") == "GPL-3.0-or-later"
    assert labels[f"{prefix}.revision"] == run.revision
    assert f"{prefix}.base.digest" not in labels
    assert all(value for value in labels.values())


@pytest.mark.parametrize(
    ("env", "version"),
    [
        ({"GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "v1.2.3"}, "1.2.3"),
        ({"GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "1.2.3"}, None),
        ({"GITHUB_REF_TYPE": "branch", "GITHUB_REF_NAME": "v1.2.3"}, None),
        ({}, None),
    ],
)
def test_a_release_for_a_git_tag_takes_its_version(env, version):
    assert tag_version(env) == version


def test_a_release_for_a_tag_that_is_no_version_is_refused_before_anything(capsys, tmp_path):
    env = {"GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "v1.2"}
    assert main(["release", "--repo", "127.0.0.1:9/x", "--report-dir", str(tmp_path)], env=env) == 2
    assert capsys.readouterr().err == "error: image version '1.2' is not semver MAJOR.MINOR.PATCH (no leading zeros)\n"


def test_the_tools_image_base_defaults_to_trixie_and_comes_from_the_flag_or_the_environment():
    # On Dagger every FROM must come from a registry the engine reaches: the tools image's too.
    assert config().tools_base_image == "debian:trixie-slim"
    assert config(tools_base_image="127.0.0.1:5000/debian:trixie-slim").tools_base_image.startswith("127.0.0.1")
    env = {"DAR_BACKUP_TOOLS_BASE_IMAGE": "127.0.0.1:5000/debian:trixie-slim"}
    assert parser(env).parse_args(["release"]).tools_base_image == env["DAR_BACKUP_TOOLS_BASE_IMAGE"]
    assert parser(env).parse_args(["release", "--tools-base-image", "b"]).tools_base_image == "b"
    assert parser({}).parse_args(["release"]).tools_base_image is None
