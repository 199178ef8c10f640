"""The image's names and labels: the OCI annotations and the tool versions every final image carries."""

from __future__ import annotations

from collections.abc import Mapping

from ci.core.baseimage import BaseImage
from ci.core.config import RunConfig
from ci.core.names import AUTHORS, DESCRIPTION, TITLE

OCI = "org.opencontainers.image"
# Present on every final image, with one of BASE_DIGEST and BASE_LOCAL_ID.
REQUIRED_OCI_KEYS = (
    "title",
    "description",
    "version",
    "created",
    "revision",
    "source",
    "url",
    "licenses",
    "authors",
    "base.name",
    "ref.name",
)
BASE_DIGEST = f"{OCI}.base.digest"
# A base no registry serves (a bootstrap) has no digest to label, only the engine's image id.
BASE_LOCAL_ID = "org.dar-backup.base.local-id"
TOOL_LABELS = {
    "dar-backup": "org.dar-backup.version",
    "dar": "org.dar-backup.dar.version",
    "par2": "org.dar-backup.par2.version",
}


def oci_labels(config: RunConfig, base: BaseImage) -> dict[str, str]:
    """The OCI annotations every final image carries, as the run declares them, over base."""
    labels = {
        f"{OCI}.title": TITLE,
        f"{OCI}.description": DESCRIPTION,
        f"{OCI}.version": config.image_version,
        f"{OCI}.created": config.created,
        f"{OCI}.revision": config.revision,
        f"{OCI}.source": config.source,
        f"{OCI}.url": config.source,
        f"{OCI}.licenses": config.licenses,
        f"{OCI}.authors": AUTHORS,
        f"{OCI}.base.name": base.name,
        f"{OCI}.ref.name": config.ref_name,
    }
    if base.digest is not None:
        labels[BASE_DIGEST] = base.digest
    if base.local_id is not None:
        labels[BASE_LOCAL_ID] = base.local_id
    return labels


def tool_labels(versions: Mapping[str, str]) -> dict[str, str]:
    return {TOOL_LABELS[tool]: version for tool, version in versions.items()}
