"""The build stages, engine-neutral: base, then final (same Dockerfile, labels applied) and its gates.

Nothing is built twice in one run: the final image is what the test stage runs and release publishes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci.core.baseimage import BaseImage
from ci.core.concurrency import beside
from ci.core.config import RunConfig
from ci.core.labels import DAR_FEATURES_LABEL, oci_labels, tool_labels
from ci.core.report import Report
from ci.core.versions import TOOLS
from ci.engines.seam import BuildSpec, Engine, Image
from ci.image import dar_features
from ci.image.gates import label_gate, refuse, version_gate
from ci.image.probe import probe
from ci.image.sbom import write_sbom


@dataclass(frozen=True)
class Built:
    platform: str
    # What it was built FROM: labelled, recorded in the history, compared by refresh.
    base: BaseImage
    image: Image
    versions: dict[str, str]
    labels: dict[str, str]
    sbom: str


def build_secrets(env: Mapping[str, str]) -> dict[str, Path]:
    """The extra CA of a TLS-intercepting proxy, when the host has one, as a BuildKit secret."""
    cert = env.get("PIP_CERT")
    if cert and Path(cert).is_file():
        return {"pip_cert": Path(cert).resolve()}
    return {}


def build_args(config: RunConfig, base: BaseImage, env: Mapping[str, str]) -> dict[str, str]:
    """SOURCE_DATE_EPOCH, when the run sets it (it pins the created label too), clamps the layers' mtimes.

    Unset, it is not passed: a value changing at every run would rebuild every step.
    """
    args = {"BASE_IMAGE": base.build_from, "DAR_BACKUP_VERSION": config.dar_backup_version}
    if env.get("SOURCE_DATE_EPOCH"):
        args["SOURCE_DATE_EPOCH"] = env["SOURCE_DATE_EPOCH"]
    return args


async def base(
    engine: Engine, config: RunConfig, base: BaseImage, platform: str, report: Report, *, builder: bool = True
) -> Image:
    """Target base; with builder, the Dockerfile's venv stage beside it, for final to take from the cache.

    The builder stage does not wait for base (it is built FROM the same image), so the two apt
    steps and the venv run while base builds, not after it and the probe of base final needs.
    """
    args = build_args(config, base, os.environ)
    secrets = build_secrets(os.environ)
    spec = BuildSpec("base", args, secret_files=secrets, platform=platform)
    if not builder:
        with report.step("base", f"build target base FROM {base.build_from}"):
            return await engine.build(spec)
    with report.step("base", f"build target base FROM {base.build_from}, and the venv beside it"):
        venv = BuildSpec("builder", args, secret_files=secrets, platform=platform)
        return await beside(engine.build(spec), engine.build(venv))


async def final(
    engine: Engine, config: RunConfig, base: BaseImage, platform: str, base_image: Image, report: Report
) -> Built:
    with report.step("final", "dar and par2 versions and dar's features of the base"):
        of_base = await probe(engine, base_image, ("dar", "par2"), features=True)
        features = dar_features.label_value(of_base.features)
    versions = {"dar-backup": config.dar_backup_version, **of_base.versions}
    labels = {**oci_labels(config, base), **tool_labels(versions), DAR_FEATURES_LABEL: features}
    with report.step("final", f"build target final with dar-backup {config.dar_backup_version}"):
        spec = BuildSpec(
            "final",
            build_args(config, base, os.environ),
            labels,
            build_secrets(os.environ),
            config.local_tag(platform),
            platform=platform,
        )
        image = await engine.build(spec)
    # The labels first: reading them costs one query, so a release whose labels are wrong stops
    # here, before the version probes and the whole test stage, not minutes later at the push.
    with report.step("final", "label gate: every label the run declares is on the image"):
        refuse(label_gate(await engine.labels(image, list(labels)), labels))
    with report.step("final", "version gate: tool versions in the image equal the declared ones"):
        # One container answers for both gates: the versions and dar -V.
        of_final = await probe(engine, image, TOOLS, features=True)
        refuse(version_gate(of_final.versions, versions))
    with report.step("final", "dar feature gate: dar -V has every feature the image promises"):
        present = of_final.features
        refuse(dar_features.missing(present))
        if dar_features.label_value(present) != features:
            refuse([f"dar -V in the image says {dar_features.label_value(present)!r}, its label {features!r}"])
    with report.step(
        "final",
        "SBOM: CycloneDX 1.6 of the image, schema-valid, tool versions equal the labels, packages for the platform",
    ):
        document = await write_sbom(engine, image, platform, config, versions, report)
    return Built(platform, base, image, versions, labels, document)
