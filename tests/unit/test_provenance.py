"""SLSA provenance v1 of a platform image: every field from the run's values, nothing else."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from ci.core.baseimage import BaseImage
from ci.core.config import REPO_ROOT, build_config, git_ref, workflow_ref
from ci.release import provenance
from ci.release.provenance import Build

DIGEST = "sha256:" + "ab" * 32
BASE_DIGEST = "sha256:" + "cd" * 32
FILES = {"docker/Dockerfile": "1" * 64, "docker/requirements.txt": "2" * 64}
GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_WORKFLOW_REF": "me/dar-backup-image/.github/workflows/ci.yml@refs/tags/v1.2.0",
    "GITHUB_REF": "refs/tags/v1.2.0",
    "GITHUB_REPOSITORY": "me/dar-backup-image",
}
# What a release's environment also holds: none of it may reach the statement.
SECRETS = {
    "DAR_BACKUP_REGISTRY_PASSWORD": "registry-Secret-41c2",
    "DAR_BACKUP_COSIGN_PASSWORD": "cosign-Secret-93ad",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc-Secret-0f7e",
    "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.example/?secret=url-Secret-55b1",
    "GH_TOKEN": "gh-Secret-7c3d",
}


def run_config(env):
    return build_config(
        image_version="1.2.0",
        dar_backup_version=None,
        base_image=None,
        repo="registry.example.org/dar-backup",
        dry_run=False,
        report_dir=REPO_ROOT / "reports",
        env=env,
        platforms=("linux/amd64", "linux/arm64"),
    )


REGISTRY_BASE = BaseImage("ubuntu:24.04", digest=BASE_DIGEST)
LOCAL_ID = "sha256:" + "ef" * 32


def make(env, base=REGISTRY_BASE):
    config = run_config(env)
    build = Build("linux/arm64", base, "dagger", "v9.8.7")
    return config, provenance.predicate(config, build, FILES, "2026-01-01T00:10:00Z")


def test_on_github_every_field_comes_from_the_run():
    config, predicate = make({**GITHUB, **SECRETS})
    definition = predicate["buildDefinition"]
    assert definition["buildType"] == "https://github.com/per2jensen/dar-backup-image/ci/release/provenance/v1"
    assert definition["externalParameters"] == {
        "source": "https://github.com/me/dar-backup-image",
        "ref": "refs/tags/v1.2.0",
        "revision": config.revision,
        "version": "1.2.0",
        "platforms": ["linux/amd64", "linux/arm64"],
        "platform": "linux/arm64",
        "darBackupVersion": config.dar_backup_version,
    }
    assert definition["internalParameters"] == {"engine": "dagger", "engineVersion": "v9.8.7"}
    assert definition["resolvedDependencies"] == [
        {
            "name": "source",
            "uri": "git+https://github.com/me/dar-backup-image@refs/tags/v1.2.0",
            "digest": {"gitCommit": config.revision},
        },
        {"name": "base image", "uri": "oci://ubuntu:24.04", "digest": {"sha256": "cd" * 32}},
        {
            "name": "docker/Dockerfile",
            "uri": f"git+https://github.com/me/dar-backup-image@{config.revision}#docker/Dockerfile",
            "digest": {"sha256": "1" * 64},
        },
        {
            "name": "docker/requirements.txt",
            "uri": f"git+https://github.com/me/dar-backup-image@{config.revision}#docker/requirements.txt",
            "digest": {"sha256": "2" * 64},
        },
    ]
    assert predicate["runDetails"] == {
        # The builder is the workflow, the very identity keyless signing certifies.
        "builder": {"id": f"https://github.com/{GITHUB['GITHUB_WORKFLOW_REF']}"},
        "metadata": {"invocationId": config.run_id, "startedOn": config.started, "finishedOn": "2026-01-01T00:10:00Z"},
    }


def test_elsewhere_the_builder_is_local_and_names_the_engine():
    _, predicate = make({})
    assert predicate["runDetails"]["builder"]["id"] == "urn:dar-backup-image:local-builder:dagger"


def test_a_bootstrapped_base_is_named_as_local_by_its_image_id():
    _, predicate = make({}, BaseImage("dar-backup-local-base:bookworm", local_id=LOCAL_ID))
    assert predicate["buildDefinition"]["resolvedDependencies"][1] == {
        "name": "base image",
        "uri": "local:dar-backup-local-base:bookworm",
        "digest": {"sha256": "ef" * 32},
    }


def test_a_base_named_by_digest_is_named_once():
    _, predicate = make({}, BaseImage(f"ubuntu:24.04@{'0' * 71}", digest=BASE_DIGEST))
    assert predicate["buildDefinition"]["resolvedDependencies"][1]["uri"] == "oci://ubuntu:24.04"


def test_the_statement_is_in_toto_v1_about_the_image_digest():
    _, predicate = make({})
    statement = provenance.statement("registry.example.org/dar-backup", DIGEST, predicate)
    assert statement == {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "registry.example.org/dar-backup", "digest": {"sha256": "ab" * 32}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": predicate,
    }
    assert json.loads(provenance.render(statement)) == statement


def test_no_secret_of_the_environment_reaches_the_statement():
    config, predicate = make({**GITHUB, **SECRETS})
    text = provenance.render(provenance.statement("registry.example.org/dar-backup", DIGEST, predicate))
    for secret in SECRETS.values():
        assert secret not in text
    # Mutation: a statement that did carry the environment would be caught by the same check.
    leaky = provenance.render({**predicate, "env": SECRETS})
    assert any(secret in leaky for secret in SECRETS.values())
    assert config.workflow is not None and config.workflow in text


def test_the_build_files_are_hashed_as_the_context_holds_them(tmp_path):
    for path, text in {"docker/Dockerfile": "FROM x\n", "docker/requirements.txt": "dar-backup==1\n"}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert provenance.file_digests(tmp_path) == {
        "docker/Dockerfile": hashlib.sha256(b"FROM x\n").hexdigest(),
        "docker/requirements.txt": hashlib.sha256(b"dar-backup==1\n").hexdigest(),
    }


def test_ref_and_workflow_come_from_github_or_the_checkout(tmp_path):
    assert git_ref({"GITHUB_REF": "refs/heads/main"}, tmp_path, "abc") == "refs/heads/main"
    # Not a repository (or a detached HEAD): the revision is the most exact ref there is.
    assert git_ref({}, tmp_path, "abc") == "abc"
    assert workflow_ref({**GITHUB, "GITHUB_ACTIONS": "false"}) is None
    assert workflow_ref({"GITHUB_ACTIONS": "true"}) is None


def test_a_changed_predicate_renders_differently():
    """What the history's provenance_sha256 rests on: one byte of meaning changes the digest."""
    config, predicate = make({})
    changed = dataclasses.replace(config, revision="0" * 40)
    build = Build("linux/arm64", REGISTRY_BASE, "dagger", "v9.8.7")
    other = provenance.predicate(changed, build, FILES, "2026-01-01T00:10:00Z")
    assert provenance.render(other) != provenance.render(predicate)
