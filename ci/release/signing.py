"""Signing: cosign signs a published digest, attests its SBOM, provenance and scan onto it, then verifies them.

cosign runs in a tools image built through the seam (docker/tools.Dockerfile), never on the
host. The private key, its password, the OIDC request token and registry credentials reach it
only as secrets (a mounted file or a variable), never in argv, output or reports. Pure parts
(identity, argv, reading cosign's output) are plain functions; `Cosign` is the only engine user.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci.core.config import DEFAULT_TOOLS_BASE_IMAGE, workflow_ref
from ci.core.errors import SigningError, UsageError
from ci.core.platforms import host_platform
from ci.engines.seam import BuildSpec, Engine, Image
from ci.oci.auth import RegistryAuth, SecretRef
from ci.release import provenance

TOOLS_DOCKERFILE = "docker/tools.Dockerfile"
KEY_PATH = "/run/secrets/cosign.key"
REGISTRY_CONFIG_DIR = "/run/secrets/registry"
PUBLIC_KEY_PATH = "/run/cosign/cosign.pub"
SBOM_PATH = "/run/cosign/sbom.cdx.json"
PROVENANCE_PATH = "/run/cosign/provenance.json"
VULN_PATH = "/run/cosign/vuln.json"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"


@dataclass(frozen=True)
class Attestation:
    """A kind of predicate: the `--type` verify-attestation selects it by, the file attest reads, its predicateType.

    `attest_type` is what attest is given: cosign parses a predicate of a type it knows into its
    own structure and signs what that structure prints back, while a predicate type URI makes it
    sign the document as written, under that same predicateType.
    """

    kind: str
    path: str
    predicate_type: str
    attest_type: str


SBOM = Attestation("cyclonedx", SBOM_PATH, CYCLONEDX_PREDICATE, "cyclonedx")
# Not `--type slsaprovenance1`: cosign up to 3.0.5 (Debian's 2.5.0 in the tools image) reads the
# predicate into in-toto-golang < 0.10's SLSA v1 structure, which prints metadata.invocationId as
# `invocationID` (in-toto-golang commit 64e680e fixed it). By URI the predicate is signed as
# written; `verify-attestation --type slsaprovenance1` selects it by the same predicateType.
PROVENANCE = Attestation("slsaprovenance1", PROVENANCE_PATH, provenance.PREDICATE_TYPE, provenance.PREDICATE_TYPE)
# By name: cosign reads the predicate into its own vuln structure (attestation.CosignVulnPredicate)
# and signs what that prints; ci.image.vulns.predicate writes exactly those fields (RFC 3339
# timestamps to the second), so the attested predicate is the one written, which
# verify_attestation checks.
VULN = Attestation("vuln", VULN_PATH, "https://cosign.sigstore.dev/attestation/vuln/v1", "vuln")
OIDC_VARIABLES = ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
# The cosign commands that use the private key or the OIDC token; the others only verify.
SIGNING_COMMANDS = frozenset({"sign", "attest", "public-key"})


@dataclass(frozen=True)
class Identity:
    """Who signs: a key pair (local) or GitHub Actions' OIDC identity (keyless)."""

    key: SecretRef | None = None
    password: SecretRef | None = None
    certificate_identity: str | None = None
    issuer: str = GITHUB_ISSUER
    oidc: Mapping[str, SecretRef] = field(default_factory=dict)


def signing_identity(env: Mapping[str, str]) -> Identity:
    """The identity a release signs with; one clear line when there is none."""
    key_file = env.get("DAR_BACKUP_COSIGN_KEY_FILE")
    if key_file:
        path = Path(key_file)
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UsageError(f"DAR_BACKUP_COSIGN_KEY_FILE={key_file} is not a readable file")
        password = SecretRef("env://DAR_BACKUP_COSIGN_PASSWORD") if "DAR_BACKUP_COSIGN_PASSWORD" in env else None
        return Identity(key=SecretRef(f"file://{path.resolve()}"), password=password)
    if env.get("GITHUB_ACTIONS") == "true" and all(env.get(name) for name in OIDC_VARIABLES):
        workflow = workflow_ref(env)
        if workflow is None:
            raise UsageError("keyless signing needs GITHUB_WORKFLOW_REF to name the workflow identity")
        return Identity(
            certificate_identity=workflow,
            oidc={name: SecretRef(f"env://{name}") for name in OIDC_VARIABLES},
        )
    raise UsageError(
        "a release is signed: set DAR_BACKUP_COSIGN_KEY_FILE (with DAR_BACKUP_COSIGN_PASSWORD), "
        "or run on GitHub Actions with id-token: write for keyless signing"
    )


def key_fingerprint(public_key_pem: str) -> str:
    """sha256 of the public key's DER bytes, as `sha256:…`."""
    body = re.search(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", public_key_pem, re.S)
    if body is None:
        raise SigningError("cosign public-key printed no PEM public key")
    return "sha256:" + hashlib.sha256(base64.b64decode("".join(body.group(1).split()))).hexdigest()


def signature_tags(digest: str) -> tuple[str, str]:
    """The tags cosign stores the signature and the attestations under, beside the image."""
    tag = digest.replace(":", "-")
    return f"{tag}.sig", f"{tag}.att"


def _with_identity(
    args: list[str], identity: Identity, insecure: bool, *, verifying: bool, public_key: str = PUBLIC_KEY_PATH
) -> list[str]:
    if identity.key is not None and verifying:
        args += ["--key", public_key, "--insecure-ignore-tlog=true"]
    elif identity.key is not None:
        # A private key has no public transparency log to record its signatures in.
        args += ["--key", KEY_PATH, "--tlog-upload=false"]
    elif verifying:
        args += [
            "--certificate-identity",
            str(identity.certificate_identity),
            "--certificate-oidc-issuer",
            identity.issuer,
        ]
    return args + (["--allow-insecure-registry"] if insecure else [])


def sign_args(identity: Identity, ref: str, insecure: bool, recursive: bool = False) -> list[str]:
    # --recursive: an image index's signature covers, and is stored for, each platform manifest too.
    sign = ["sign", "--yes", *(["--recursive"] if recursive else [])]
    return [*_with_identity(sign, identity, insecure, verifying=False), ref]


def attest_args(identity: Identity, ref: str, insecure: bool, what: Attestation = SBOM) -> list[str]:
    attest = ["attest", "--yes", "--type", what.attest_type, "--predicate", what.path]
    return [*_with_identity(attest, identity, insecure, verifying=False), ref]


def verify_args(identity: Identity, ref: str, insecure: bool, public_key: str = PUBLIC_KEY_PATH) -> list[str]:
    verify = ["verify", "--output", "json"]
    return [*_with_identity(verify, identity, insecure, verifying=True, public_key=public_key), ref]


def verify_attestation_args(
    identity: Identity, ref: str, insecure: bool, what: Attestation = SBOM, public_key: str = PUBLIC_KEY_PATH
) -> list[str]:
    verify = ["verify-attestation", "--type", what.kind, "--output", "json"]
    return [*_with_identity(verify, identity, insecure, verifying=True, public_key=public_key), ref]


def user_commands(identity: Identity, ref: str, insecure: bool, public_key: str = "cosign.pub") -> list[str]:
    """The commands a user runs to verify ref as the release did: signature, SBOM, provenance, vulnerability scan."""
    argvs = [verify_args(identity, ref, insecure, public_key)]
    argvs += [verify_attestation_args(identity, ref, insecure, what, public_key) for what in (SBOM, PROVENANCE, VULN)]
    return [shlex.join(["cosign", *argv]) for argv in argvs]


def _json_documents(text: str) -> list[Any]:
    """cosign prints one JSON document (verify) or one a line (verify-attestation)."""
    stripped = text.strip()
    try:
        return [json.loads(stripped)] if stripped.startswith("[") else [json.loads(line) for line in text.splitlines()]
    except json.JSONDecodeError as err:
        raise SigningError(f"cosign printed something that is not JSON: {err}") from None


def verified_digests(text: str) -> set[str]:
    """The manifest digests `cosign verify` found valid signatures for."""
    documents = _json_documents(text)
    try:
        return {entry["critical"]["image"]["docker-manifest-digest"] for doc in documents for entry in doc}
    except (KeyError, TypeError) as err:
        raise SigningError(f"cosign verify printed an unexpected document: missing {err}") from None


def attested_predicates(text: str, digest: str, predicate_type: str = CYCLONEDX_PREDICATE) -> list[Any]:
    """The predicates of predicate_type among the verified attestations whose subject is `digest`."""
    predicates = []
    for envelope in _json_documents(text):
        try:
            statement = json.loads(base64.b64decode(envelope["payload"]))
            subjects = {f"sha256:{s['digest']['sha256']}" for s in statement["subject"]}
            kind, predicate = statement["predicateType"], statement["predicate"]
        except (KeyError, TypeError, ValueError) as err:
            raise SigningError(f"cosign verify-attestation printed an unreadable statement: {err}") from None
        if kind == predicate_type and digest in subjects:
            predicates.append(predicate)
    return predicates


def identity_record(identity: Identity, public_key_pem: str | None) -> str:
    if public_key_pem is not None:
        return f"key {key_fingerprint(public_key_pem)}"
    return f"keyless {identity.certificate_identity} ({identity.issuer})"


async def build_tools(
    engine: Engine, base_image: str = DEFAULT_TOOLS_BASE_IMAGE, auth: RegistryAuth | None = None
) -> Image:
    """The cosign image, FROM base_image (the local engine: or its bootstrap where no registry answers)."""
    # cosign runs where the pipeline runs: the host's platform, whichever platforms are released.
    base = await engine.resolve_base(base_image, host_platform(), auth)
    spec = BuildSpec(
        "tools", {"BASE_IMAGE": base.build_from}, dockerfile=TOOLS_DOCKERFILE, tag="dar-backup-tools:local"
    )
    return await engine.build(spec)


@dataclass(frozen=True)
class Cosign:
    engine: Engine
    tools: Image
    identity: Identity
    # The registry's address when it is on the host's loopback (plain HTTP), as the local
    # release tests use; on Dagger it is relayed into cosign's container under that address.
    loopback: str | None = None
    # A docker config.json holding the registry credentials, for pushing signatures.
    registry_config: SecretRef | None = None

    async def run(self, args: Sequence[str], files: Mapping[str, str] | None = None) -> str:
        env: dict[str, str] = {}
        # Only what signs gets the signing secrets. Dagger replaces every occurrence of a secret
        # the exec was given with `***` in its stdout and stderr (engine/engineutil/secret_scrub.go,
        # set up in executor_spec.go, setupSecretScrubbing). A verification prints the payloads
        # in base64, 70 KB for an SBOM, where a short key password occurs by chance (`pw`: 19
        # times in one, on a real engine), and the payload no longer decodes. Verifying needs
        # only the public key, which is public.
        signs = args[0] in SIGNING_COMMANDS
        secrets: dict[str, SecretRef] = dict(self.identity.oidc) if signs else {}
        if self.identity.key is not None and signs:
            secrets[KEY_PATH] = self.identity.key
            if self.identity.password is not None:
                secrets["COSIGN_PASSWORD"] = self.identity.password
            else:
                env["COSIGN_PASSWORD"] = ""
        if self.registry_config is not None:
            secrets[f"{REGISTRY_CONFIG_DIR}/config.json"] = self.registry_config
            env["DOCKER_CONFIG"] = REGISTRY_CONFIG_DIR
        result = await self.engine.run(
            self.tools, ["cosign", *args], env=env, secrets=secrets, files=files, network=True, loopback=self.loopback
        )
        if not result.ok:
            raise SigningError(f"cosign {args[0]} exited {result.exit_code}: {result.tail(3)}")
        return result.stdout

    @property
    def insecure(self) -> bool:
        return self.loopback is not None

    async def public_key(self) -> str | None:
        if self.identity.key is None:
            return None
        return await self.run(["public-key", "--key", KEY_PATH])

    async def sign(self, repo: str, digest: str, recursive: bool = False) -> None:
        await self.run(sign_args(self.identity, f"{repo}@{digest}", self.insecure, recursive))

    async def attest(self, repo: str, digest: str, predicate_text: str, what: Attestation = SBOM) -> None:
        args = attest_args(self.identity, f"{repo}@{digest}", self.insecure, what)
        await self.run(args, files={what.path: predicate_text})

    def _public(self, public_key: str | None) -> dict[str, str]:
        return {PUBLIC_KEY_PATH: public_key} if public_key is not None else {}

    async def verify(self, ref: str, digest: str, public_key: str | None) -> None:
        """`ref` (a tag or a digest) carries a valid signature for `digest` and no other."""
        args = verify_args(self.identity, ref, self.insecure)
        signed = verified_digests(await self.run(args, self._public(public_key)))
        if signed != {digest}:
            raise SigningError(f"cosign verified signatures of {sorted(signed)} for {ref}, expected only {digest}")

    async def verify_attestation(
        self, ref: str, digest: str, public_key: str | None, predicates: Sequence[str], what: Attestation = SBOM
    ) -> None:
        """`ref` carries valid attestations of exactly these predicates for `digest`, and no other of the kind."""
        args = verify_attestation_args(self.identity, ref, self.insecure, what)
        attested = attested_predicates(await self.run(args, self._public(public_key)), digest, what.predicate_type)
        if not same_documents(attested, [json.loads(text) for text in predicates]):
            raise SigningError(f"the {what.kind} predicates attested on {ref} are not the ones this release wrote")


def same_documents(found: Sequence[Any], written: Sequence[Any]) -> bool:
    """The same JSON documents, as many times each, in any order."""

    def canonical(documents: Sequence[Any]) -> list[str]:
        return sorted(json.dumps(document, sort_keys=True) for document in documents)

    return canonical(found) == canonical(written)
