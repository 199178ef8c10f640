import hashlib
import json

import pytest

from ci.core.errors import PlatformError, RegistryError
from ci.core.platforms import architecture, default_platforms, host_platform, parse_platforms, slug
from ci.oci import media as oci


def test_platform_lists_parse_in_the_order_given():
    assert parse_platforms("linux/arm64, linux/amd64") == ("linux/arm64", "linux/amd64")
    assert parse_platforms("linux/amd64") == ("linux/amd64",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "comma list"),
        ("linux/amd64,", "comma list"),
        ("linux/s390x", "unknown platform 'linux/s390x'"),
        ("amd64", "unknown platform 'amd64'"),
        ("linux/arm64/v8", "unknown platform"),
        ("linux/amd64,linux/amd64", "twice"),
    ],
)
def test_bad_platform_lists_are_refused_with_one_line(text, message):
    with pytest.raises(PlatformError, match=message) as caught:
        parse_platforms(text)
    assert "\n" not in str(caught.value)


def test_defaults_build_the_host_and_release_both_host_first():
    assert default_platforms(False, "linux/arm64") == ("linux/arm64",)
    assert default_platforms(True, "linux/arm64") == ("linux/arm64", "linux/amd64")
    assert default_platforms(True, "linux/amd64") == ("linux/amd64", "linux/arm64")


def test_host_platform_names_and_words():
    assert host_platform("x86_64") == "linux/amd64"
    assert host_platform("aarch64") == "linux/arm64"
    with pytest.raises(PlatformError, match="riscv64"):
        host_platform("riscv64")
    assert (architecture("linux/arm64"), slug("linux/arm64")) == ("arm64", "linux-arm64")


def test_manifest_and_index_are_the_bytes_their_digests_name():
    config = oci.Descriptor.of(oci.CONFIG, b'{"architecture":"arm64"}')
    layer = oci.Descriptor.of(oci.LAYER, b"layer bytes")
    manifest = oci.image_manifest(config, [layer])
    document = json.loads(manifest)
    assert document["mediaType"] == oci.MANIFEST and document["schemaVersion"] == 2
    assert document["config"] == {"mediaType": oci.CONFIG, "digest": config.digest, "size": 24}
    assert document["layers"][0]["digest"] == "sha256:" + hashlib.sha256(b"layer bytes").hexdigest()
    amd64 = oci.Descriptor.of(oci.MANIFEST, manifest)
    arm64 = oci.Descriptor.of(oci.MANIFEST, manifest + b" ")
    index = json.loads(oci.image_index({"linux/amd64": amd64, "linux/arm64": arm64}))
    assert index["mediaType"] == oci.INDEX
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
    ]
    assert oci.index_platforms(index) == {"linux/amd64": amd64.digest, "linux/arm64": arm64.digest}


def test_reading_an_index_skips_attestations_and_refuses_what_is_not_one():
    entry = {"mediaType": oci.MANIFEST, "size": 1}
    index = {
        "mediaType": oci.DOCKER_LIST,
        "manifests": [
            {**entry, "digest": "sha256:1", "platform": {"os": "linux", "architecture": "amd64"}},
            {**entry, "digest": "sha256:2", "platform": {"os": "unknown", "architecture": "unknown"}},
        ],
    }
    assert oci.index_platforms(index) == {"linux/amd64": "sha256:1"}
    with pytest.raises(RegistryError, match="not an image index"):
        oci.index_platforms({"mediaType": oci.MANIFEST, "layers": []})
    twice = {**index, "manifests": [index["manifests"][0], {**index["manifests"][0], "digest": "sha256:3"}]}
    with pytest.raises(RegistryError, match="linux/amd64 twice"):
        oci.index_platforms(twice)
