"""The image's names and labels: the OCI annotations and the tool versions every final image carries."""

from __future__ import annotations

from collections.abc import Mapping

from ci.core.config import RunConfig
from ci.core.names import AUTHORS, DESCRIPTION, TITLE

OCI = "org.opencontainers.image"
# Present on every final image; base.digest joins them when the base has a registry digest.
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
TOOL_LABELS = {
    "dar-backup": "org.dar-backup.version",
    "dar": "org.dar-backup.dar.version",
    "par2": "org.dar-backup.par2.version",
}


def oci_labels(config: RunConfig) -> dict[str, str]:
    """The OCI annotations every final image carries, as the run declares them."""
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
        f"{OCI}.base.name": config.base_image,
        f"{OCI}.ref.name": config.ref_name,
    }
    if config.base_digest:
        labels[f"{OCI}.base.digest"] = config.base_digest
    return labels


def tool_labels(versions: Mapping[str, str]) -> dict[str, str]:
    return {TOOL_LABELS[tool]: version for tool, version in versions.items()}
