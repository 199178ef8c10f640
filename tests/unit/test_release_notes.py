"""Release notes from the history and the run: what a user reads on the release page."""

from __future__ import annotations

import shlex

from ci.core.report import Step
from ci.release import notes
from ci.release.signing import signing_identity, user_commands
from tests.support.samples import AMD64, HISTORY_ENTRY

LOCAL_ID = "sha256:" + "5" * 64
FIRST = {**HISTORY_ENTRY, "tag": "1.0.0", "image_ref": "r/dar-backup@sha256:" + "a" * 64}
SECOND = {
    **HISTORY_ENTRY,
    "build_number": 2,
    "tag": "1.1.0",
    "image_ref": "r/dar-backup@sha256:" + "9" * 64,
    "digest": "sha256:" + "9" * 64,
    "dar_version": "2.7.9",
    "platforms": {
        "linux/amd64": {**AMD64, "digest": "sha256:" + "8" * 64, "base_digest": "sha256:" + "7" * 64},
        "linux/arm64": {**AMD64, "digest": "sha256:" + "6" * 64, "base_digest": None, "base_local_id": LOCAL_ID},
    },
    "notes": "refresh: linux/amd64: +less 590-2",
}
COMMANDS = ["cosign verify --key cosign.pub r/dar-backup@sha256:" + "9" * 64]
UPGRADE = [
    Step("upgrade", "pull the previous release r/dar-backup@sha256:aaa (linux/amd64)"),
    Step("upgrade", "FULL: the candidate restores 1.0.0's chain"),
    Step("upgrade", "rollback: 1.0.0 restores the candidate's FULL", "warning", message="exit 1"),
    Step("release", "push"),
]


def test_a_second_release_names_the_first_as_previous_and_what_changed():
    text = notes.render(SECOND, FIRST, ["linux/amd64: +less 590-2"], "passed: 2/2 checks", COMMANDS)
    assert text.startswith("# dar-backup image 1.1.0\n")
    assert f"- Previous release: 1.0.0 (`{FIRST['image_ref']}`)" in text
    assert f"- Image: `{SECOND['image_ref']}`" in text and "- Why: refresh: linux/amd64: +less 590-2" in text
    # Each platform's digest and base.
    assert f"| linux/amd64 | `{'sha256:' + '8' * 64}` | `ubuntu:24.04` | `{'sha256:' + '7' * 64}` |" in text
    assert f"| linux/arm64 | `{'sha256:' + '6' * 64}` | `ubuntu:24.04` | `local {LOCAL_ID}` |" in text
    assert "- dar 2.7.9 (was 2.7.8)" in text and "- par2 0.8.1 (unchanged)" in text
    assert "- linux/amd64: +less 590-2" in text
    assert "## Upgrade check\n\npassed: 2/2 checks\n" in text
    assert "```sh\n" + COMMANDS[0] + "\n```" in text


def test_the_first_release_has_nothing_to_compare():
    text = notes.render(FIRST, None, [], "skipped: no previous release", COMMANDS)
    assert "- First release in the build history" in text and "Previous release" not in text
    assert "Nothing to compare: this is the first release." in text
    assert "- dar 2.7.8\n" in text and "(unchanged)" not in text
    assert "## Upgrade check\n\nskipped: no previous release\n" in text


def test_no_change_says_so():
    assert "No change since 1.0.0." in notes.render(SECOND, FIRST, [], "passed", COMMANDS)


def test_the_notes_list_the_scan_s_findings_and_exceptions():
    scanned = ["linux/amd64 finding: TEST-1 rich 15.0.0 fixed in no release (medium)", "linux/amd64 exception: X"]
    text = notes.render(SECOND, FIRST, [], "passed", COMMANDS, scanned)
    assert (
        "## Vulnerability scan\n\n- linux/amd64 finding: TEST-1 rich" in text and "- linux/amd64 exception: X" in text
    )
    assert "## Vulnerability scan" not in notes.render(SECOND, FIRST, [], "passed", COMMANDS)


def test_upgrade_result_as_the_report_recorded_it():
    assert notes.upgrade_result(UPGRADE, "1.0.0") == (
        "passed: 2/2 checks, 1.0.0's archives and catalog restore with this release; "
        "1.0.0 restores the candidate's FULL: warning (exit 1)"
    )
    skipped = [Step("upgrade", "archives…", "skipped", message="skipped: no previous release")]
    assert notes.upgrade_result(skipped, None) == "skipped: no previous release"
    assert notes.upgrade_result([Step("release", "push")], None) == "not run"
    # A gating step that did not pass shows in the count (the release would have stopped on it).
    failed = [*UPGRADE[:1], Step("upgrade", "DIFF", "failed")]
    assert notes.upgrade_result(failed, "1.0.0").startswith("passed: 1/2 checks")


def test_user_commands_verify_with_the_release_s_own_identity(tmp_path):
    key = tmp_path / "cosign.key"
    key.write_text("k")
    ref = "registry.example.org/dar-backup@sha256:" + "9" * 64
    keyed = [
        shlex.split(c) for c in user_commands(signing_identity({"DAR_BACKUP_COSIGN_KEY_FILE": str(key)}), ref, False)
    ]
    assert [argv[:2] for argv in keyed] == [["cosign", "verify"], *[["cosign", "verify-attestation"]] * 3]
    assert [argv[argv.index("--type") + 1] for argv in keyed[1:]] == ["cyclonedx", "slsaprovenance1", "vuln"]
    assert all(argv[argv.index("--key") + 1] == "cosign.pub" and argv[-1] == ref for argv in keyed)
    assert all("--allow-insecure-registry" not in argv for argv in keyed)
    github = {
        "GITHUB_ACTIONS": "true",
        "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.example",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "t0ken",
        "GITHUB_WORKFLOW_REF": "me/dar-backup-image/.github/workflows/ci.yml@refs/tags/v1.1.0",
    }
    keyless = [shlex.split(c) for c in user_commands(signing_identity(github), ref, False)]
    for argv in keyless:
        assert "--key" not in argv and "t0ken" not in shlex.join(argv)
        assert argv[argv.index("--certificate-identity") + 1] == f"https://github.com/{github['GITHUB_WORKFLOW_REF']}"
        assert argv[argv.index("--certificate-oidc-issuer") + 1] == "https://token.actions.githubusercontent.com"
