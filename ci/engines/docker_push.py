"""Push images the local Docker daemon holds through the registry API, by digest.

Docker 20.10 pushes only by tag and writes no image index, so the adapter reads each image
as `docker save` writes it and uploads blobs and an OCI manifest itself: platform manifests
go up by digest, and only the last write (the manifest or the index) names the tag.
"""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

from ci.core.errors import EngineError
from ci.oci import media as oci
from ci.oci.registry import Registry


def read_member(archive: tarfile.TarFile, name: str) -> bytes:
    member = archive.extractfile(name)
    if member is None:
        raise EngineError(f"{name} is missing from the saved image")
    return member.read()


def push_saved_image(registry: Registry, saved: Path, tag: str | None) -> oci.Descriptor:
    """Upload the config and gzipped layers of a `docker save` archive, then its manifest.

    The manifest is stored under tag, or by its own digest when tag is None.
    """
    with tarfile.open(saved) as archive:
        (entry,) = json.loads(read_member(archive, "manifest.json"))
        config = read_member(archive, entry["Config"])
        layers = []
        for name in entry["Layers"]:
            # mtime 0: the same layer always compresses to the same blob.
            blob = gzip.compress(read_member(archive, name), compresslevel=6, mtime=0)
            layers.append(oci.Descriptor.of(oci.LAYER, blob))
            registry.upload_blob(layers[-1].digest, blob)
    config_descriptor = oci.Descriptor.of(oci.CONFIG, config)
    registry.upload_blob(config_descriptor.digest, config)
    manifest = oci.image_manifest(config_descriptor, layers)
    descriptor = oci.Descriptor.of(oci.MANIFEST, manifest)
    stored = registry.put_manifest(tag or descriptor.digest, oci.MANIFEST, manifest)
    if stored != descriptor.digest:
        raise EngineError(f"the registry stored the manifest as {stored}, not {descriptor.digest}")
    return descriptor
