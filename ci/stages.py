"""The four stages, engine-neutral: small async functions over the engine seam.

base → final (same Dockerfile, target final, labels applied) → test (the final image, fresh
volumes) → release (gates on the tested image). Nothing is built twice in one run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci.config import RunConfig, oci_labels, tool_labels
from ci.engines.seam import BuildSpec, Engine, Image, SecretRef
from ci.platforms import architecture, slug
from ci.release import sbom
from ci.release.gates import version_gate
from ci.report import Report, StageFailure, write_atomically
from ci.scenario import Scenario
from ci.versions import TOOLS, VersionError, tool_version


@dataclass(frozen=True)
class Built:
    platform: str
    image: Image
    versions: dict[str, str]
    labels: dict[str, str]
    sbom: str


def sbom_file(platform: str) -> str:
    return f"sbom-{slug(platform)}.cdx.json"


def build_secrets(env: Mapping[str, str]) -> dict[str, SecretRef]:
    """The extra CA of a TLS-intercepting proxy, when the host has one, as a BuildKit secret."""
    cert = env.get("PIP_CERT")
    if cert and Path(cert).is_file():
        return {"pip_cert": SecretRef(f"file://{Path(cert).resolve()}")}
    return {}


def build_args(config: RunConfig) -> dict[str, str]:
    return {"BASE_IMAGE": config.base_image, "DAR_BACKUP_VERSION": config.dar_backup_version}


async def probe_versions(engine: Engine, image: Image, tools: tuple[str, ...]) -> dict[str, str]:
    """`TOOL --version` inside the image, parsed; a tool that fails to answer fails the stage."""
    versions: dict[str, str] = {}
    for tool in tools:
        result = await engine.run(image, [tool, "--version"])
        try:
            versions[tool] = tool_version(tool, result.stdout + result.stderr)
        except VersionError as err:
            raise StageFailure(f"{tool} --version in {image.description} (exit {result.exit_code}): {err}") from None
    return versions


async def base(engine: Engine, config: RunConfig, platform: str, report: Report) -> Image:
    with report.step("base", f"build target base FROM {config.base_image}"):
        spec = BuildSpec("base", build_args(config), secrets=build_secrets(os.environ), platform=platform)
        return await engine.build(spec)


async def final(engine: Engine, config: RunConfig, platform: str, base_image: Image, report: Report) -> Built:
    with report.step("final", "dar and par2 versions of the base"):
        versions = await probe_versions(engine, base_image, ("dar", "par2"))
    versions = {"dar-backup": config.dar_backup_version, **versions}
    labels = {**oci_labels(config), **tool_labels(versions)}
    with report.step("final", f"build target final with dar-backup {config.dar_backup_version}"):
        spec = BuildSpec(
            "final",
            build_args(config),
            labels,
            build_secrets(os.environ),
            config.local_tag(platform),
            platform=platform,
        )
        image = await engine.build(spec)
    with report.step("final", "version gate: tool versions in the image equal the declared ones"):
        problems = version_gate(await probe_versions(engine, image, TOOLS), versions)
        if problems:
            raise StageFailure("; ".join(problems))
    with report.step(
        "final",
        "SBOM: CycloneDX 1.6 of the image, schema-valid, tool versions equal the labels, packages for the platform",
    ):
        document = await write_sbom(engine, image, platform, config, versions, report)
    return Built(platform, image, versions, labels, document)


async def write_sbom(
    engine: Engine,
    image: Image,
    platform: str,
    config: RunConfig,
    versions: Mapping[str, str],
    report: Report,
    digest: str | None = None,
) -> str:
    """Read the image, assemble and validate its SBOM, gate it, write it; returns the document."""
    text = sbom.render(
        sbom.build_bom(
            await sbom.read_contents(engine, image), config.image_version, config.created, digest, config.repo
        )
    )
    document = json.loads(text)
    problems = sbom.sbom_gate(document, versions) + sbom.architecture_gate(document, architecture(platform))
    if problems:
        raise StageFailure("SBOM gate: " + "; ".join(problems))
    write_atomically(config.report_dir / sbom_file(platform), text)
    report.notes.append(f"{platform} {sbom.summary(document)}")
    return text


async def test(engine: Engine, final_image: Image, report: Report) -> None:
    # Each platform's story starts from empty volumes of its own.
    prefix = f"{slug(final_image.platform)}-" if final_image.platform else ""
    await Scenario(engine, final_image, report, volume_prefix=prefix).run()
