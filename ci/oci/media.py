"""OCI image manifests and indexes as documents: written for a push, read back for the gates."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ci.core.errors import RegistryError

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
# The OCI empty descriptor's media type and its one content, `{}`.
EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_CONTENT = b"{}"
# What a client accepts when it reads a tag: either kind of index or manifest.
MANIFEST_TYPES = ", ".join([INDEX, MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    @classmethod
    def of(cls, media_type: str, data: bytes) -> Descriptor:
        return cls(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))

    def as_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def encode(document: Mapping[str, Any]) -> bytes:
    # The bytes pushed are the bytes digested: one canonical encoding, no whitespace.
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def image_manifest(config: Descriptor, layers: Sequence[Descriptor]) -> bytes:
    return encode(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config.as_json(),
            "layers": [layer.as_json() for layer in layers],
        }
    )


def placeholder_manifest(note: str) -> bytes:
    """A manifest of nothing (the empty config, no layers), made unique by its note.

    A tag pointed at it names no image any more: the way to remove a tag where the registry
    deletes manifests by digest only (and each with every tag naming it).
    """
    return encode(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": Descriptor.of(EMPTY, EMPTY_CONTENT).as_json(),
            "layers": [],
            "annotations": {"org.dar-backup.placeholder": note},
        }
    )


def is_digest(reference: str) -> bool:
    return reference.startswith("sha256:")


def image_index(manifests: Mapping[str, Descriptor]) -> bytes:
    """An index of platform (`linux/arm64`) → that platform's image manifest."""
    entries = []
    for platform, descriptor in manifests.items():
        os_name, architecture = platform.split("/")
        entries.append({**descriptor.as_json(), "platform": {"architecture": architecture, "os": os_name}})
    return encode({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries})


def index_platforms(document: Mapping[str, Any]) -> dict[str, str]:
    """platform → manifest digest of an index (or Docker manifest list); attestation entries skipped.

    Raises RegistryError for a document that is not an index or names a platform twice.
    """
    if document.get("mediaType", INDEX) not in (INDEX, DOCKER_LIST) or not isinstance(document.get("manifests"), list):
        raise RegistryError("not an image index")
    found: dict[str, str] = {}
    for entry in document["manifests"]:
        platform = entry.get("platform") or {}
        name = f"{platform.get('os')}/{platform.get('architecture')}"
        if name == "unknown/unknown":
            continue
        if name in found:
            raise RegistryError(f"the index names {name} twice")
        found[name] = str(entry["digest"])
    return found
