"""Signing's plain functions: who signs, what cosign is asked, and reading what it answers."""

import base64
import hashlib
import json

import pytest

from ci.core.errors import SigningError, UsageError
from ci.release.signing import (
    KEY_PATH,
    PROVENANCE,
    PROVENANCE_PATH,
    PUBLIC_KEY_PATH,
    attest_args,
    attested_predicates,
    identity_record,
    key_fingerprint,
    same_documents,
    sign_args,
    signature_tags,
    signing_identity,
    verified_digests,
    verify_args,
    verify_attestation_args,
)

DIGEST = "sha256:" + "ab" * 32
GITHUB = {
    "GITHUB_ACTIONS": "true",
    "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.example",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "t0ken",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_WORKFLOW_REF": "me/dar-backup-image/.github/workflows/ci.yml@refs/tags/v1.2.0",
}


def test_a_key_file_signs_with_its_password_by_reference(tmp_path):
    key = tmp_path / "cosign.key"
    key.write_text("k")
    identity = signing_identity({"DAR_BACKUP_COSIGN_KEY_FILE": str(key), "DAR_BACKUP_COSIGN_PASSWORD": ""})
    assert identity.key.uri == f"file://{key}" and identity.password.uri == "env://DAR_BACKUP_COSIGN_PASSWORD"
    assert sign_args(identity, f"r@{DIGEST}", insecure=True) == [
        "sign", "--yes", "--key", KEY_PATH, "--tlog-upload=false", "--allow-insecure-registry", f"r@{DIGEST}",
    ]  # fmt: skip
    assert verify_args(identity, "r:1", insecure=False)[3:6] == [
        "--key",
        PUBLIC_KEY_PATH,
        "--insecure-ignore-tlog=true",
    ]


def test_github_actions_signs_keyless_and_verifies_the_workflow_identity():
    identity = signing_identity(GITHUB)
    assert identity.key is None and set(identity.oidc) == {
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    }
    assert all(ref.uri.startswith("env://") for ref in identity.oidc.values())
    assert sign_args(identity, "r@x", insecure=False) == ["sign", "--yes", "r@x"]
    args = verify_args(identity, "r:1.2.0", insecure=False)
    assert args[args.index("--certificate-identity") + 1] == f"https://github.com/{GITHUB['GITHUB_WORKFLOW_REF']}"
    assert args[args.index("--certificate-oidc-issuer") + 1] == "https://token.actions.githubusercontent.com"
    assert identity_record(identity, None).startswith("keyless https://github.com/me/dar-backup-image/")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "a release is signed: set DAR_BACKUP_COSIGN_KEY_FILE"),
        ({"DAR_BACKUP_COSIGN_KEY_FILE": "/nonexistent"}, "DAR_BACKUP_COSIGN_KEY_FILE=/nonexistent is not a readable"),
        ({**GITHUB, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": ""}, "a release is signed"),  # no id-token: write
        ({**GITHUB, "GITHUB_WORKFLOW_REF": ""}, "keyless signing needs GITHUB_WORKFLOW_REF"),
    ],
)
def test_no_identity_is_one_clear_refusal(env, message):
    with pytest.raises(UsageError, match=message):
        signing_identity(env)


def test_key_fingerprint_and_signature_tags():
    der = b"\x30\x59public-key-bytes"
    pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n"
    assert key_fingerprint(pem) == "sha256:" + hashlib.sha256(der).hexdigest()
    assert identity_record(signing_identity(GITHUB), pem).startswith("key sha256:")
    with pytest.raises(SigningError, match="no PEM public key"):
        key_fingerprint("Error: wrong password")
    assert signature_tags(DIGEST) == (f"sha256-{'ab' * 32}.sig", f"sha256-{'ab' * 32}.att")


def test_verify_output_names_the_signed_digests():
    assert verified_digests(json.dumps([{"critical": {"image": {"docker-manifest-digest": DIGEST}}}])) == {DIGEST}
    with pytest.raises(SigningError, match="unexpected document"):
        verified_digests(json.dumps([{"critical": {}}]))
    with pytest.raises(SigningError, match="not JSON"):
        verified_digests("Verification for r -- The following checks were performed")


def envelope(digest: str, predicate: dict, kind: str = "https://cyclonedx.org/bom") -> str:
    statement = {"predicateType": kind, "subject": [{"digest": {"sha256": digest.removeprefix("sha256:")}}]}
    payload = base64.b64encode(json.dumps({**statement, "predicate": predicate}).encode()).decode()
    return json.dumps({"payloadType": "application/vnd.in-toto+json", "payload": payload})


def test_attested_predicates_are_those_for_this_digest_and_kind():
    bom = {"bomFormat": "CycloneDX"}
    lines = [envelope(DIGEST, bom), envelope("sha256:" + "cd" * 32, {"other": 1}), envelope(DIGEST, {}, "spdx")]
    assert attested_predicates("\n".join(lines) + "\n", DIGEST) == [bom]
    with pytest.raises(SigningError, match="unreadable statement"):
        attested_predicates(json.dumps({"payload": "not base64 json"}), DIGEST)


@pytest.mark.parametrize("env", [GITHUB, {}])
def test_provenance_is_attested_and_verified_with_the_same_identity_as_the_sbom(env, tmp_path):
    key = tmp_path / "cosign.key"
    key.write_text("k")
    identity = signing_identity(env or {"DAR_BACKUP_COSIGN_KEY_FILE": str(key)})
    sbom, slsa = attest_args(identity, "r@x", False), attest_args(identity, "r@x", False, PROVENANCE)
    # By its predicate type URI, so cosign signs the predicate as written (see signing.PROVENANCE).
    assert slsa[:6] == ["attest", "--yes", "--type", "https://slsa.dev/provenance/v1", "--predicate", PROVENANCE_PATH]
    # Everything but the kind and the file is the SBOM's: the same signer, the same flags.
    assert slsa[6:] == sbom[6:]
    verify_sbom = verify_attestation_args(identity, "r:1", False)
    verify_slsa = verify_attestation_args(identity, "r:1", False, PROVENANCE)
    assert verify_slsa[:3] == ["verify-attestation", "--type", "slsaprovenance1"] and verify_slsa[3:] == verify_sbom[3:]


def test_attested_provenance_is_read_by_its_own_predicate_type():
    predicate = {"buildDefinition": {}, "runDetails": {}}
    lines = [envelope(DIGEST, {"bomFormat": "CycloneDX"}), envelope(DIGEST, predicate, PROVENANCE.predicate_type)]
    assert attested_predicates("\n".join(lines), DIGEST, PROVENANCE.predicate_type) == [predicate]


def test_exactly_the_written_documents_count_in_any_order():
    a, b = {"a": 1, "n": [1, 2]}, {"b": 2}
    assert same_documents([b, a], [a, b])
    assert not same_documents([a], [a, b])
    assert not same_documents([a, a], [a])
    assert not same_documents([{"a": 1, "n": [2, 1]}], [a])
