"""SLSA provenance v1 of one released platform image: how it was made, as an in-toto Statement v1.

Plain functions over the run's values: what was asked for (source, ref, revision, versions,
platforms), what the build resolved (the commit, the base image by digest, the lock file and the
Dockerfile by sha256), who built it (the GitHub workflow, or a local builder naming the engine)
and when. Only values that describe the build go in: never an environment, a credential or a
path on the builder. cosign wraps the predicate in its own statement whose subject is the
digest it attests; `statement` is the same document, written beside the SBOM for users.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci.core.baseimage import BaseImage
from ci.core.config import RunConfig
from ci.core.platforms import slug

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# Bumped whenever a field below changes meaning, so readers know which shape they hold.
FORMAT = 1
BUILD_TYPE = f"https://github.com/per2jensen/dar-backup-image/ci/release/provenance/v{FORMAT}"
# The build's inputs a user can check against the source tree at the revision.
BUILD_FILES = ("docker/Dockerfile", "docker/requirements.txt")


@dataclass(frozen=True)
class Build:
    """One platform image as the run made it."""

    platform: str
    base: BaseImage
    engine: str
    engine_version: str


def provenance_file(platform: str) -> str:
    return f"provenance-{slug(platform)}.intoto.json"


def file_digests(root: Path, paths: tuple[str, ...] = BUILD_FILES) -> dict[str, str]:
    """sha256 (hex) of each build input, as the build context holds it."""
    return {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in paths}


def builder_id(config: RunConfig, engine: str) -> str:
    """The GitHub workflow ref on GitHub; elsewhere a local builder that names the engine."""
    return config.workflow or f"urn:dar-backup-image:local-builder:{engine}"


def base_dependency(base: BaseImage) -> dict[str, Any]:
    """A registry base by its manifest digest; a base no registry serves named as local, by its image id."""
    if base.digest is not None:
        algorithm, _, value = base.digest.partition(":")
        return {"name": "base image", "uri": f"oci://{base.name.partition('@')[0]}", "digest": {algorithm: value}}
    algorithm, _, value = str(base.local_id).partition(":")
    return {"name": "base image", "uri": f"local:{base.name}", "digest": {algorithm: value}}


def predicate(config: RunConfig, build: Build, files: Mapping[str, str], finished: str) -> dict[str, Any]:
    """The SLSA provenance v1 predicate of build."""
    source = {"name": "source", "uri": f"git+{config.source}@{config.ref}", "digest": {"gitCommit": config.revision}}
    inputs = [
        {"name": path, "uri": f"git+{config.source}@{config.revision}#{path}", "digest": {"sha256": digest}}
        for path, digest in sorted(files.items())
    ]
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "source": config.source,
                "ref": config.ref,
                "revision": config.revision,
                "version": config.image_version,
                "platforms": list(config.platforms),
                "platform": build.platform,
                "darBackupVersion": config.dar_backup_version,
            },
            "internalParameters": {"engine": build.engine, "engineVersion": build.engine_version},
            "resolvedDependencies": [source, base_dependency(build.base), *inputs],
        },
        "runDetails": {
            "builder": {"id": builder_id(config, build.engine)},
            "metadata": {"invocationId": config.run_id, "startedOn": config.started, "finishedOn": finished},
        },
    }


def statement(repo: str, digest: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The in-toto Statement v1 about the image digest."""
    algorithm, _, value = digest.partition(":")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": repo, "digest": {algorithm: value}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": dict(body),
    }


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
