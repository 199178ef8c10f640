"""A base image's digest for one platform, read from its registry: what a build goes FROM and is labelled with.

The digest is that of the platform's image manifest, not of the index a multi-platform tag
names. The OCI annotation `base.digest` is the image "sharing zero-indexed layers with the
image", which is the platform manifest (an index has no layers); each platform's image then
names its own base, and a refresh sees a change to one platform's base on that platform only.
Both engines build FROM exactly this digest, so what is labelled is what was built on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ci.core.errors import RegistryError
from ci.oci.auth import RegistryAuth, auth_for, split_reference
from ci.oci.media import DOCKER_LIST, INDEX
from ci.oci.registry import Registry


def platform_entry(document: Mapping[str, Any], platform: str) -> str:
    """The manifest digest an index names for platform (`linux/arm64`; its variant v8 is the only one).

    Raises RegistryError when no entry, or more than one (`linux/arm` v6 and v7), matches.
    """
    os_name, architecture = platform.split("/")
    found = [
        str(entry["digest"])
        for entry in document.get("manifests") or []
        if (entry.get("platform") or {}).get("os") == os_name
        and (entry.get("platform") or {}).get("architecture") == architecture
    ]
    if len(found) != 1:
        raise RegistryError(f"the index names {len(found)} images for {platform}, not one")
    return found[0]


def config_platform(config: Mapping[str, Any]) -> str:
    """`os/architecture` of an image config."""
    return f"{config.get('os')}/{config.get('architecture')}"


def resolve_digest(requested: str, platform: str, auth: RegistryAuth | None) -> str:
    """The digest of requested's image manifest for platform; RegistryError when it has none.

    The run's credentials go along only to their own registry; elsewhere it reads anonymously
    (Docker Hub hands out anonymous pull tokens through the Bearer challenge the client follows).
    """
    repo, reference = split_reference(requested)
    registry = Registry.logged_in(repo, auth_for(repo, auth))
    media_type, body = registry.manifest(reference)
    document = json.loads(body)
    try:
        if media_type in (INDEX, DOCKER_LIST):
            return platform_entry(document, platform)
        # One image, no index: its config says which platform it is for.
        config = (document.get("config") or {}).get("digest")
        if not isinstance(config, str):
            raise RegistryError(f"a {media_type or 'manifest'} without a config")
        found = config_platform(json.loads(registry.blob(config)))
    except RegistryError as err:
        raise RegistryError(f"{requested} for {platform}: {err}") from None
    if found != platform:
        raise RegistryError(f"{requested} is an image for {found}, not {platform}")
    return "sha256:" + hashlib.sha256(body).hexdigest()
