"""The SBOM as plain functions: parsing what the image prints, the CycloneDX document, the gate."""

import json

import pytest

from ci.core.errors import OutputError
from ci.image.sbom import (
    DebPackage,
    ImageContents,
    PyDist,
    architecture_gate,
    build_bom,
    parse_distributions,
    parse_dpkg,
    parse_os_release,
    render,
    sbom_gate,
    summary,
    tool_versions,
    upstream_version,
    validate_schema,
)
from tests.support.samples import DISTS, DPKG, OS_RELEASE

LABELLED = {"dar-backup": "1.1.11", "dar": "2.7.8", "par2": "0.8.1"}
DIGEST = "sha256:" + "ab" * 32


def contents() -> ImageContents:
    return ImageContents(parse_os_release(OS_RELEASE), parse_dpkg(DPKG), parse_distributions(DISTS))


def document(**kwargs) -> dict:
    return json.loads(render(build_bom(contents(), "1.2.0", "2026-11-26T10:00:00Z", **kwargs)))


def test_parses_what_the_image_prints():
    assert parse_os_release(OS_RELEASE)["VERSION_ID"] == "12"
    assert parse_dpkg(DPKG)[1] == DebPackage("dar", "2.7.8-2+b9", "amd64")
    assert parse_distributions(DISTS)[0] == PyDist("dar-backup", "1.1.11", "GPL-3.0-or-later")


@pytest.mark.parametrize(
    ("parser", "text", "message"),
    [
        (parse_dpkg, "dar 2.7.8 amd64\n", "unreadable dpkg-query line"),
        (parse_dpkg, "", "listed no packages"),
        (parse_os_release, 'NAME="x"\n', "names no ID"),
        (parse_distributions, "[{", "unreadable list of Python distributions"),
        (parse_distributions, '[{"name": "x"}]', "unreadable list of Python distributions"),
    ],
)
def test_unreadable_output_is_an_sbom_error(parser, text, message):
    with pytest.raises(OutputError, match=message):
        parser(text)


def test_document_is_cyclonedx_1_6_with_purls_for_every_component():
    doc = document()
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    purls = {c["name"]: c["purl"] for c in doc["components"]}
    assert purls["dar"] == "pkg:deb/debian/dar@2.7.8-2%2Bb9?arch=amd64&distro=debian-12"
    assert purls["dar-backup"] == "pkg:pypi/dar-backup@1.1.11"
    assert purls["Pygments"] == "pkg:pypi/pygments@2.19.2"
    assert len(doc["components"]) == 8
    licenses = {c["name"]: c.get("licenses") for c in doc["components"]}
    assert licenses["dar-backup"] == [{"license": {"id": "GPL-3.0-or-later"}}]
    assert licenses["Pygments"] == [{"license": {"name": "BSD License"}}]
    assert licenses["inputimeout"] is None
    image = doc["metadata"]["component"]
    assert (image["type"], image["name"], image["version"]) == ("container", "dar-backup", "1.2.0")
    assert "purl" not in image and doc["metadata"]["timestamp"].startswith("2026-11-26T10:00:00")


def test_published_image_carries_its_digest():
    image = document(digest=DIGEST, repo="registry.example.org/team/dar-backup")["metadata"]["component"]
    # packageurl-python's canonical form keeps the digest's colon as is; purl parsers read both.
    assert image["purl"] == f"pkg:oci/dar-backup@{DIGEST}?repository_url=registry.example.org/team/dar-backup"


def test_a_document_the_schema_refuses_is_an_error():
    doc = document()
    del doc["components"][0]["name"]
    with pytest.raises(OutputError, match=r"does not validate against CycloneDX 1\.6"):
        validate_schema(json.dumps(doc))


@pytest.mark.parametrize(
    ("package", "upstream"),
    [("2.7.8-2+b9", "2.7.8"), ("0.8.1-2", "0.8.1"), ("1:2.7.13+dfsg-1build2", "2.7.13"), ("1.1.11", "1.1.11")],
)
def test_upstream_version(package, upstream):
    assert upstream_version(package) == upstream


def test_sbom_gate_passes_when_versions_equal_the_labels():
    doc = document()
    assert tool_versions(doc) == LABELLED
    assert sbom_gate(doc, LABELLED) == []
    assert summary(doc) == "SBOM: 8 components (4 deb, 4 pypi); dar 2.7.8, par2 0.8.1, dar-backup 1.1.11"


def test_sbom_gate_names_a_missing_or_different_tool():
    doc = document()
    doc["components"] = [c for c in doc["components"] if c["name"] != "dar-backup"]
    assert sbom_gate(doc, LABELLED) == ["the SBOM lists no dar-backup"]
    assert sbom_gate(document(), {**LABELLED, "par2": "0.8.2"}) == ["the SBOM says par2 0.8.1, the label says 0.8.2"]


def test_architecture_gate_names_packages_built_for_another_platform():
    assert architecture_gate(document(), "amd64") == []
    mixed = ImageContents(
        parse_os_release(OS_RELEASE),
        parse_dpkg(DPKG.replace("python3\t3.11.2-1+b1\tamd64", "python3\t3.11.2-1+b1\tall")),
        parse_distributions(DISTS),
    )
    assert architecture_gate(json.loads(render(build_bom(mixed, "1.2.0", "2026-11-26T10:00:00Z"))), "amd64") == []
    assert architecture_gate(document(), "arm64") == [
        "packages not built for arm64: base-files (amd64), dar (amd64), par2 (amd64), python3 (amd64)"
    ]
