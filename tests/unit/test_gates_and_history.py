import json

import pytest
import semver

from ci.image.gates import label_gate, same_versions, version_gate
from ci.oci.auth import split_repo
from ci.oci.registry import base_url
from ci.release import history
from ci.release.tags import floating_tags, newer_than_all
from tests.support.samples import AMD64, FORMAT_3_ENTRY, FORMAT_4_ENTRY, HISTORY_ENTRY

V = semver.Version.parse


def test_label_gate_names_missing_empty_and_different_labels():
    expected = {"a": "1", "b": "2", "c": "3", "d": "4"}
    found = {"a": "1", "b": "", "c": "x", "d": None}
    assert label_gate(found, expected) == [
        "label b is missing or empty",
        "label c is 'x', the run declared '3'",
        "label d is missing or empty",
    ]
    assert label_gate(expected, expected) == []


def test_version_gate_compares_every_declared_tool():
    declared = {"dar-backup": "1.1.11", "dar": "2.7.8", "par2": "0.8.1"}
    assert version_gate(declared, declared) == []
    assert version_gate({**declared, "dar": "2.7.9"}, declared) == ["dar --version says '2.7.9', declared '2.7.8'"]


@pytest.mark.parametrize(
    ("version", "history_tags", "registry_tags", "problems"),
    [
        ("1.2.0", ["1.1.0"], ["1.1.0", "1.1", "latest"], []),
        ("1.1.0", ["1.1.0"], [], ["1.1.0 is not newer than 1.1.0 in the build history"]),
        ("1.0.9", [], ["1.1.0-rc.1"], ["1.0.9 is not newer than 1.1.0-rc.1 in the registry"]),
        ("1.1.0", [], ["1.1.0-rc.1"], []),
        ("1.1.0-rc.2", [], ["1.1.0-rc.1"], []),
        # The newest of each source is named, not the first or the last listed.
        (
            "2.0.0",
            ["1.0.0", "3.0.0", "2.5.0"],
            ["4.0.0", "latest", "1.9.9", "sha256-abc.sig"],
            ["2.0.0 is not newer than 3.0.0 in the build history", "2.0.0 is not newer than 4.0.0 in the registry"],
        ),
    ],
)
def test_version_must_be_newer_than_history_and_registry(version, history_tags, registry_tags, problems):
    assert newer_than_all(V(version), history_tags, registry_tags) == problems


def test_prereleases_move_no_floating_tag():
    assert floating_tags(V("1.4.2")) == ["1.4", "latest"]
    assert floating_tags(V("1.5.0-rc.1")) == []


def test_every_platform_must_report_the_same_tool_versions():
    amd64 = {"dar-backup": "1.1.11", "dar": "2.7.8", "par2": "0.8.1"}
    assert same_versions({"linux/amd64": amd64, "linux/arm64": dict(amd64)}) == []
    assert same_versions({"linux/amd64": amd64}) == []
    assert same_versions({"linux/amd64": amd64, "linux/arm64": {**amd64, "dar": "2.7.17"}}) == [
        "linux/arm64 has dar '2.7.17', linux/amd64 has '2.7.8'"
    ]


ENTRY = HISTORY_ENTRY


def test_history_round_trip_appends_one_entry(tmp_path):
    path = tmp_path / "doc/build-history.json"
    assert history.read(path) == []
    history.append(path, history.next_entry([], {k: v for k, v in ENTRY.items() if k != "build_number"}))
    second = history.next_entry(history.read(path), {**ENTRY, "tag": "1.1.0"} | {"build_number": 0})
    assert second["build_number"] == 2
    history.append(path, second)
    assert [b["tag"] for b in history.read(path)] == ["1.0.0", "1.1.0"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "not valid JSON"),
        ([], "expected"),
        ({"format": 1, "builds": []}, "expected"),
        ({"format": 2, "builds": []}, "expected"),
        ({"format": 3, "builds": [{"tag": "1.0.0"}]}, "missing keys"),
        ({"format": 4, "builds": [FORMAT_3_ENTRY]}, "attested must list"),
        ({"format": 3, "builds": [{**FORMAT_3_ENTRY, "tag": "latest"}]}, "not semver"),
        ({"format": 5, "builds": [{**ENTRY, "signing": {**ENTRY["signing"], "attested": "x"}}]}, "attested must list"),
        ({"format": 5, "builds": [{**ENTRY, "signing": {**ENTRY["signing"], "attested": []}}]}, "attested must list"),
        ({"format": 5, "builds": [{**ENTRY, "tag": "latest"}]}, "not semver"),
        ({"format": 5, "builds": [{**ENTRY, "build_number": 3}]}, "should be 1"),
        ({"format": 5, "builds": [{**ENTRY, "digest": "md5:x"}]}, "not sha256"),
        ({"format": 5, "builds": [ENTRY, {**ENTRY, "build_number": 2}]}, "appears twice"),
        ({"format": 5, "builds": [{**ENTRY, "build_number": True}]}, "wrong type"),
        ({"format": 5, "builds": [{**ENTRY, "signing": {}}]}, "signing must have exactly identity"),
        ({"format": 5, "builds": [{**ENTRY, "signing": {**ENTRY["signing"], "identity": ""}}]}, "all non-empty"),
        ({"format": 5, "builds": [{**ENTRY, "notes": None}]}, "notes has the wrong type"),
        ({"format": 4, "builds": [{k: v for k, v in ENTRY.items() if k != "platforms"}]}, "platforms"),
        ({"format": 5, "builds": [{**ENTRY, "platforms": {}}]}, "platforms must name one or more"),
        ({"format": 5, "builds": [{**ENTRY, "platforms": {"linux/s390x": AMD64}}]}, "platforms must name"),
        ({"format": 5, "builds": [{**ENTRY, "platforms": {"linux/amd64": {**AMD64, "digest": "x"}}}]}, "not sha256"),
        (
            {"format": 5, "builds": [{**ENTRY, "platforms": {"linux/amd64": {**AMD64, "vulnerabilities": {}}}}]},
            r"platforms\[linux/amd64\].vulnerabilities has missing keys",
        ),
        (
            {"format": 5, "builds": [{**ENTRY, "platforms": {"linux/amd64": {**AMD64, "sbom_sha256": None}}}]},
            r"platforms\[linux/amd64\]: sbom_sha256 has the wrong type",
        ),
    ],
)
def test_malformed_history_is_refused_and_left_alone(tmp_path, document, message):
    path = tmp_path / "build-history.json"
    text = document if isinstance(document, str) else json.dumps(document)
    path.write_text(text)
    with pytest.raises(history.HistoryError, match=message):
        history.read(path)
    with pytest.raises(history.HistoryError):
        history.append(path, dict(ENTRY))
    assert path.read_text() == text


@pytest.mark.parametrize(("old_format", "entry"), [(3, FORMAT_3_ENTRY), (4, FORMAT_4_ENTRY)])
def test_an_older_history_reads_migrated_and_is_written_back_as_format_5(tmp_path, old_format, entry):
    path = tmp_path / "build-history.json"
    path.write_text(json.dumps({"format": old_format, "builds": [entry]}))
    (old,) = history.read(path)
    # Format 3 releases attested their SBOMs and no provenance, format 4 ones were not scanned:
    # the migration says exactly that.
    expected = ["https://cyclonedx.org/bom"] + (["https://slsa.dev/provenance/v1"] if old_format == 4 else [])
    assert old["signing"]["attested"] == expected
    assert (old["platforms"]["linux/amd64"]["provenance_sha256"] is None) == (old_format == 3)
    assert old["platforms"]["linux/amd64"]["vulnerabilities"] is None
    history.append(path, history.next_entry([old], {**ENTRY, "tag": "1.1.0"}))
    written = json.loads(path.read_text())
    assert written["format"] == 5 and written["builds"][0] == old
    assert [b["tag"] for b in history.read(path)] == ["1.0.0", "1.1.0"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"signing": {**ENTRY["signing"], "attested": ["https://cyclonedx.org/bom"]}}, "no verified SLSA provenance"),
        ({"platforms": {"linux/amd64": {**AMD64, "provenance_sha256": None}}}, "needs its provenance_sha256"),
        (
            {"signing": {**ENTRY["signing"], "attested": ENTRY["signing"]["attested"][:2]}},
            "no verified vulnerability scan",
        ),
        ({"platforms": {"linux/amd64": {**AMD64, "vulnerabilities": None}}}, "needs its vulnerabilities"),
    ],
)
def test_a_new_entry_must_record_verified_provenance_and_scan(change, message):
    with pytest.raises(history.HistoryError, match=message):
        history.next_entry([], {**ENTRY, **change})
    # What an old release recorded still reads.
    history.validate_entry({**ENTRY, **change}, "old entry")


def test_repository_history_file_is_valid():
    from ci.core.config import REPO_ROOT

    path = REPO_ROOT / "doc/build-history.json"
    document = json.loads(path.read_text())
    # Reading validates (and raises on any fault); what it gives back is every recorded build, as written.
    assert document["format"] == history.FORMAT
    assert history.read(path) == document["builds"]


@pytest.mark.parametrize(
    ("repo", "host", "name"),
    [
        ("127.0.0.1:5000/dar-backup", "127.0.0.1:5000", "dar-backup"),
        ("per2jensen/dar-backup", "registry-1.docker.io", "per2jensen/dar-backup"),
        ("docker.io/per2jensen/dar-backup", "registry-1.docker.io", "per2jensen/dar-backup"),
        ("ghcr.io/org/team/dar-backup", "ghcr.io", "org/team/dar-backup"),
        ("localhost/x", "localhost", "x"),
    ],
)
def test_repo_split(repo, host, name):
    assert split_repo(repo) == (host, name)


def test_plain_http_only_on_loopback():
    assert base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert base_url("localhost:5000") == "http://localhost:5000"
    assert base_url("ghcr.io") == "https://ghcr.io"
