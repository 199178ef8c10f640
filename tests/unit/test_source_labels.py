"""Where the source and url labels come from: override, GitHub Actions, origin, upstream."""

import subprocess

import pytest

from ci.core.config import source_url, web_url
from ci.core.errors import UsageError
from ci.core.names import DEFAULT_SOURCE


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("https://github.com/me/fork.git", "https://github.com/me/fork"),
        ("https://x-access-token:ghs_SeCrEt@github.com/me/fork.git", "https://github.com/me/fork"),
        ("https://oauth2:glpat-SeCrEt@git.example.org:8443/grp/sub/proj/", "https://git.example.org:8443/grp/sub/proj"),
        ("git@github.com:me/fork.git", "https://github.com/me/fork"),
        ("ssh://git@gitlab.example.org:2222/grp/proj.git", "https://gitlab.example.org/grp/proj"),
        ("/srv/git/dar-backup-image", None),
        ("file:///srv/git/dar-backup-image", None),
        ("../dar-backup-image", None),
    ],
)
def test_git_remotes_become_web_urls_without_credentials(remote, url):
    assert web_url(remote) == url


def _repo_with_origin(tmp_path, origin):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", origin], check=True)
    return tmp_path


def test_source_from_the_origin_remote_never_carries_its_token(tmp_path):
    root = _repo_with_origin(tmp_path, "https://x-access-token:ghs_SeCrEt@github.com/me/fork.git")
    assert source_url({}, root) == "https://github.com/me/fork"


def test_source_prefers_override_then_github_then_origin_then_upstream(tmp_path):
    root = _repo_with_origin(tmp_path, "git@github.com:me/fork.git")
    github = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "org/mirror"}
    override = {"DAR_BACKUP_SOURCE_URL": "https://git.example.org/backups/dar-backup-image/", **github}
    assert source_url(override, root) == "https://git.example.org/backups/dar-backup-image"
    assert source_url(github, root) == "https://github.com/org/mirror"
    assert source_url({}, root) == "https://github.com/me/fork"
    no_remote = tmp_path / "bare"
    subprocess.run(["git", "init", "-q", str(no_remote)], check=True)
    assert source_url({}, no_remote) == DEFAULT_SOURCE
    local = _repo_with_origin(tmp_path / "local", "/srv/git/dar-backup-image")
    assert source_url({}, local) == DEFAULT_SOURCE


@pytest.mark.parametrize("bad", ["", "ftp://x.example/y", "https://user:pw@x.example/y", "x.example/y"])
def test_bad_source_override_is_refused_without_echoing_it(bad, tmp_path):
    with pytest.raises(UsageError, match="DAR_BACKUP_SOURCE_URL must be an http") as err:
        source_url({"DAR_BACKUP_SOURCE_URL": bad}, tmp_path)
    assert "pw" not in str(err.value)
