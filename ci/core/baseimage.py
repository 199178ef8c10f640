"""The base image one platform's build goes FROM, pinned so it cannot move between resolving and building."""

from __future__ import annotations

from dataclasses import dataclass


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

        A local base goes by its tag: BuildKit looks `name@<image id>` up in a registry, never
        in the engine's own images, and the tag is one only this engine writes.
        """
        if self.digest is None:
            return self.name
        return f"{self.name.partition('@')[0]}@{self.digest}"

    @property
    def identity(self) -> str:
        """What a refresh compares: the registry digest, or the local image id marked as local."""
        return self.digest or f"local {self.local_id}"
