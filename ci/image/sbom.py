"""The image's software bill of materials: CycloneDX 1.6 JSON made with cyclonedx-python-lib.

What is installed is read inside the image through the seam (the dpkg database, /etc/os-release,
the venv's own importlib.metadata); the document is assembled, validated against the CycloneDX
schema and gated here, on the host, as plain functions over those values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from ci.core.config import RunConfig
from ci.core.errors import OutputError, StageFailure
from ci.core.files import write_atomically
from ci.core.names import IMAGE_NAME
from ci.core.platforms import architecture, slug
from ci.core.report import Report
from ci.engines.batch import Batch
from ci.engines.seam import Engine, Image

VENV_PYTHON = "/opt/dar-backup/bin/python"
DPKG_QUERY = ["dpkg-query", "-W", "-f", "${Package}\\t${Version}\\t${Architecture}\\n"]
# Printed by the image's own python: every distribution in its venv, with what it says of its license.
DISTRIBUTIONS_SCRIPT = """
import importlib.metadata as m, json
found = []
for dist in m.distributions():
    meta = dist.metadata
    license = meta.get("License-Expression") or ""
    if not license:
        named = [c.rsplit(" :: ", 1)[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License :: ")]
        text = (meta.get("License") or "").strip()
        license = " OR ".join(named) if named else (text if text and "\\n" not in text and len(text) < 80 else "")
    found.append({"name": meta["Name"], "version": meta["Version"], "license": license})
print(json.dumps(sorted(found, key=lambda d: d["name"].lower())))
"""
# Where the tools the labels name come from: the distribution's dar and par2, dar-backup from PyPI.
TOOL_SOURCES = {"dar": "deb", "par2": "deb", "dar-backup": "pypi"}


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    arch: str


@dataclass(frozen=True)
class PyDist:
    name: str
    version: str
    license: str


@dataclass(frozen=True)
class ImageContents:
    os_release: Mapping[str, str]
    debs: tuple[DebPackage, ...]
    dists: tuple[PyDist, ...]


def parse_dpkg(text: str) -> tuple[DebPackage, ...]:
    packages = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 3 or not all(fields):
            raise OutputError(f"unreadable dpkg-query line {line[:80]!r}")
        packages.append(DebPackage(*fields))
    if not packages:
        raise OutputError("dpkg-query listed no packages")
    return tuple(sorted(packages, key=lambda p: p.name))


def parse_os_release(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Z_]+", key):
            found[key] = value.strip().strip('"')
    if "ID" not in found:
        raise OutputError("/etc/os-release names no ID")
    return found


def parse_distributions(text: str) -> tuple[PyDist, ...]:
    try:
        return tuple(PyDist(d["name"], d["version"], d["license"]) for d in json.loads(text))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise OutputError(f"unreadable list of Python distributions: {err}") from None


async def read_contents(engine: Engine, image: Image) -> ImageContents:
    """What the image holds, read by running its own tools (no network, no entrypoint)."""

    batch = Batch.of([["cat", "/etc/os-release"], DPKG_QUERY, [VENV_PYTHON, "-c", DISTRIBUTIONS_SCRIPT]])
    results = batch.results(await engine.run(image, batch.argv))
    for argv, result in zip(batch.commands, results, strict=True):
        if not result.ok:
            raise OutputError(f"{argv[0]} in {image.description} exited {result.exit_code}: {result.tail(3)}")
    os_release, packages, distributions = (result.stdout for result in results)
    return ImageContents(parse_os_release(os_release), parse_dpkg(packages), parse_distributions(distributions))


def deb_purl(package: DebPackage, os_release: Mapping[str, str]) -> PackageURL:
    distro = f"{os_release['ID']}-{os_release.get('VERSION_ID', '')}".rstrip("-")
    return PackageURL("deb", os_release["ID"], package.name, package.version, {"arch": package.arch, "distro": distro})


def image_purl(digest: str, repo: str | None) -> PackageURL:
    return PackageURL("oci", None, IMAGE_NAME, digest, {"repository_url": repo} if repo else None)


def build_bom(
    contents: ImageContents, image_version: str, created: str, digest: str | None = None, repo: str | None = None
) -> Bom:
    licenses = LicenseFactory()
    components = [
        Component(
            type=ComponentType.OPERATING_SYSTEM if package.name == "base-files" else ComponentType.LIBRARY,
            name=package.name,
            version=package.version,
            purl=(purl := deb_purl(package, contents.os_release)),
            bom_ref=purl.to_string(),
        )
        for package in contents.debs
    ] + [
        Component(
            name=dist.name,
            version=dist.version,
            purl=(purl := PackageURL("pypi", None, dist.name.lower(), dist.version)),
            bom_ref=purl.to_string(),
            licenses=[licenses.make_from_string(dist.license)] if dist.license else None,
        )
        for dist in contents.dists
    ]
    bom = Bom(components=components)
    bom.metadata.timestamp = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    bom.metadata.component = image = Component(
        type=ComponentType.CONTAINER,
        name=IMAGE_NAME,
        version=image_version,
        purl=image_purl(digest, repo) if digest else None,
        bom_ref=f"image:{IMAGE_NAME}:{image_version}",
    )
    # Everything installed is part of the image; no finer graph is claimed.
    bom.register_dependency(image, components)
    return bom


def validate_schema(text: str) -> None:
    problem = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if problem is not None:
        raise OutputError(f"the SBOM does not validate against CycloneDX 1.6: {problem}")


def render(bom: Bom) -> str:
    """The document as JSON, refused unless the CycloneDX 1.6 schema accepts it."""
    text = JsonV1Dot6(bom).output_as_string(indent=2) + "\n"
    validate_schema(text)
    return text


def upstream_version(package_version: str) -> str:
    """`1:2.7.8+dfsg-2+b9` → `2.7.8`: without epoch, Debian revision and repack suffixes."""
    version = package_version.split(":", 1)[-1]
    version = version.rsplit("-", 1)[0] if "-" in version else version
    return re.split(r"[+~]", version, maxsplit=1)[0]


def tool_versions(document: Mapping[str, Any]) -> dict[str, str | None]:
    """The versions the SBOM gives dar, par2 (upstream part of the package) and dar-backup."""
    found: dict[str, str | None] = dict.fromkeys(TOOL_SOURCES)
    for component in document.get("components", []):
        purl = str(component.get("purl", ""))
        for tool, kind in TOOL_SOURCES.items():
            if purl.startswith(f"pkg:{kind}/") and component.get("name") == tool:
                version = str(component.get("version", ""))
                found[tool] = upstream_version(version) if kind == "deb" else version
    return found


def sbom_gate(document: Mapping[str, Any], labelled: Mapping[str, str]) -> list[str]:
    """One line per tool whose SBOM version is missing or differs from its label."""
    problems = []
    for tool, version in tool_versions(document).items():
        if version is None:
            problems.append(f"the SBOM lists no {tool}")
        elif version != labelled.get(tool):
            problems.append(f"the SBOM says {tool} {version}, the label says {labelled.get(tool)}")
    return problems


def architecture_gate(document: Mapping[str, Any], architecture: str) -> list[str]:
    """Every distribution package is built for the image's architecture (or for all): a build
    that silently ran for another platform lists the wrong one."""
    wrong = sorted(
        f"{c['name']} ({arch})"
        for c in document.get("components", [])
        if str(c.get("purl", "")).startswith("pkg:deb/")
        for arch in [PackageURL.from_string(str(c["purl"])).qualifiers.get("arch", "?")]
        if arch not in (architecture, "all")
    )
    return [f"packages not built for {architecture}: {', '.join(wrong[:5])}"] if wrong else []


def summary(document: Mapping[str, Any]) -> str:
    components = document.get("components", [])
    debs = sum(str(c.get("purl", "")).startswith("pkg:deb/") for c in components)
    pypi = sum(str(c.get("purl", "")).startswith("pkg:pypi/") for c in components)
    versions = ", ".join(f"{tool} {version}" for tool, version in tool_versions(document).items())
    return f"SBOM: {len(components)} components ({debs} deb, {pypi} pypi); {versions}"


def deb_versions(document: Mapping[str, Any]) -> dict[str, str]:
    """Installed distribution packages by name, as the SBOM lists them."""
    return {
        str(c["name"]): str(c["version"])
        for c in document.get("components", [])
        if str(c.get("purl", "")).startswith("pkg:deb/")
    }


def package_set_sha256(document: Mapping[str, Any]) -> str:
    """One digest of every distribution package's purl (name, version, architecture, distro)."""
    purls = sorted(
        str(c["purl"]) for c in document.get("components", []) if str(c.get("purl", "")).startswith("pkg:deb/")
    )
    return hashlib.sha256("\n".join(purls).encode()).hexdigest()


def sbom_file(platform: str) -> str:
    return f"sbom-{slug(platform)}.cdx.json"


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
    text = render(
        build_bom(await read_contents(engine, image), config.image_version, config.created, digest, config.repo)
    )
    document = json.loads(text)
    problems = sbom_gate(document, versions) + architecture_gate(document, architecture(platform))
    if problems:
        raise StageFailure("SBOM gate: " + "; ".join(problems))
    write_atomically(config.report_dir / sbom_file(platform), text)
    report.notes.append(f"{platform} {summary(document)}")
    return text
