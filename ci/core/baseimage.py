"""The base image one platform's build goes FROM, pinned so it cannot move between resolving and building."""

from __future__ import annotations

from dataclasses import dataclass

# What the image is built FROM unless the run names another (--base-image, BASE_IMAGE).
DEFAULT_BASE_IMAGE = "ubuntu:24.04"
# The local engine's own bases: its bootstraps (`:<suite>`), and the tag each local base's
# build goes FROM (`:id-<image id>`).
LOCAL_BASE_REPO = "dar-backup-local-base"


@dataclass(frozen=True)
class BaseImage:
    """A base from a registry (`digest`), or one only the engine has (`local_id`): exactly one of them.

    `name` is the tag as given, or the tag the engine gave a base it made itself (a bootstrap).
    `digest` is the registry digest of the platform's image manifest; `local_id` the engine's
    image id of a base no registry serves, recorded so a refresh still sees it change.
    """

    name: str
    digest: str | None = None
    local_id: str | None = None

    def __post_init__(self) -> None:
        # Both or neither would leave the label, the history and refresh to guess which it is.
        if (self.digest is None) == (self.local_id is None):
            raise ValueError(f"base {self.name}: exactly one of a registry digest and a local image id")

    @property
    def build_from(self) -> str:
        """What FROM names: `name@digest` from a registry (a given digest replaced by the platform's).

        A local base goes by a tag made of the image id recorded, `dar-backup-local-base:id-<hex>`,
        which the engine writes before the build: BuildKit (Docker 20.10's) reads `sha256:<id>`
        and `name@<id>` as names to pull from a registry, never as the engine's own images, and
        the base's own tag (ubuntu:24.04) is one a pull may move to another image meanwhile.
        """
        if self.local_id is not None:
            return f"{LOCAL_BASE_REPO}:id-{self.local_id.removeprefix('sha256:')}"
        return f"{self.name.partition('@')[0]}@{self.digest}"

    @property
    def identity(self) -> str:
        """What a refresh compares: the registry digest, or the local image id marked as local."""
        return self.digest or f"local {self.local_id}"
