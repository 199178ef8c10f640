import dataclasses
import os
import subprocess

import pytest

from ci.core.errors import OutputError
from ci.stages import dataset
from ci.stages.listing import saved_and_removed, unshown_changes
from ci.stages.manifest import (
    HASHES_MARKER,
    MANIFEST_SCRIPT,
    OWNER_ATTRIBUTES,
    TREE_ATTRIBUTES,
    Entry,
    changed_paths,
    compare,
    empty_dirs,
    hardlink_groups,
    parse,
)


def manifest_of(root) -> dict[str, Entry]:
    """The real MANIFEST_SCRIPT, run here with the host's find and sha256sum."""
    out = subprocess.run(["sh", "-c", MANIFEST_SCRIPT, "sh", str(root)], capture_output=True, check=True).stdout
    return parse(out.decode("utf-8", "surrogateescape"))


def test_parses_names_with_newlines_spaces_and_non_utf8_bytes(tmp_path):
    root = tmp_path.as_posix().encode()
    for name in (b"new\nline.txt", b"with space", b"latin1-\xe9.txt", b"-dash", b"tab\there"):
        with open(root + b"/" + name, "wb") as handle:
            handle.write(name)
    manifest = manifest_of(tmp_path)
    names = {p.encode("utf-8", "surrogateescape") for p in manifest}
    assert names == {b"new\nline.txt", b"with space", b"latin1-\xe9.txt", b"-dash", b"tab\there"}
    assert all(len(entry.sha256) == 64 for entry in manifest.values())


def test_truncated_manifest_is_an_error():
    with pytest.raises(OutputError, match="no hash section"):
        parse("f\0a\0644\01.0\01\0\0")
    with pytest.raises(OutputError, match="multiple"):
        parse(f"f\0a\0644\0{HASHES_MARKER}\0")


def test_data_set_is_deterministic(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    for root in (first, second):
        root.mkdir()
        dataset.initial(root)
    a, b = manifest_of(first), manifest_of(second)
    assert compare(a, b, attributes=("kind", "sha256", "mode", "mtime", "target")) == []
    assert a["big.bin"].kind == "f" and (first / "big.bin").stat().st_size == 18 * 2**20
    assert hardlink_groups(a) == {frozenset({"hard-a.txt", "hard-b.txt"})}
    assert {dataset.NFC_NAME, dataset.NFD_NAME} <= set(a) and dataset.NFC_NAME != dataset.NFD_NAME
    assert a["dangling-link"].target == "does/not/exist" and "empty-dir" in empty_dirs(a)


def test_each_kind_of_difference_is_named(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    dataset.initial(root)
    before = manifest_of(root)
    dataset.change_for_diff(root)
    after = manifest_of(root)
    problems = compare(before, after)
    text = "\n".join(problems)
    assert "missing: 'docs/notes/note-3.txt'" in text
    assert "unexpected: 'added/new-in-diff.txt' (f)" in text
    assert "'docs/readme.txt': sha256 expected" in text
    assert "'docs/readme.txt': mtime expected '1700000000.0000000000', got '1700020000.0000000000'" in text
    assert "'link-to-readme': target expected 'docs/readme.txt', got 'with space.txt'" in text
    assert "hardlink group lost: ['hard-a.txt', 'hard-b.txt']" in text


def test_mode_change_alone_is_caught_but_is_not_a_data_change(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    dataset.initial(root)
    dataset.change_for_diff(root)
    before = manifest_of(root)
    dataset.change_for_incr(root)
    after = manifest_of(root)
    assert "'bin/run.sh': mode expected '755', got '700'" in compare(before, after)
    touched, gone = changed_paths(before, after)
    assert "bin/run.sh" not in touched
    assert gone == {"added/new-in-diff.txt", "docs/notes/note-5.txt"}
    assert {"added/new-in-incr.txt", dataset.NFD_NAME, "docs/notes/note-5-renamed.txt"} <= touched


def test_empty_dirs_may_be_missing_only_when_allowed():
    entry = Entry("d", "755", "1.0", "1", "")
    expected = {"empty": entry, "full": entry, "full/f": Entry("f", "644", "1.0", "2", "", sha256="a" * 64)}
    got = {k: v for k, v in expected.items() if k != "empty"}
    assert empty_dirs(expected) == {"empty"}
    assert compare(expected, got) == ["missing: 'empty'"]
    assert compare(expected, got, may_be_missing=empty_dirs(expected)) == []


LISTING = (
    "[Saved][-]       [-L-][   0%][ ]  drwxr-xr-x   u\tg\t12 o\tThu Nov 26 19:31:46 2026\tdata\n"
    "[Saved][ ]       [-L-][     ][ ]  -rw-r--r--   u\tg\t4 o\tThu Nov 26 19:31:46 2026\tdata/new file.txt\n"
    "[--- REMOVED ENTRY ----] (Thu Nov 26 19:31:46 2026) [-] data/sub/big.bin\n"
)


def test_listing_reads_saved_and_removed_paths():
    assert saved_and_removed(LISTING) == ({"data", "data/new file.txt"}, {"data/sub/big.bin"})


def test_listing_names_changes_it_does_not_show():
    f = Entry("f", "644", "1.0", "1", "", sha256="a" * 64)
    before = {"sub/big.bin": f, "kept.txt": f, "gone.txt": f}
    after = {"kept.txt": f, "new file.txt": f, "other.txt": f}
    assert unshown_changes(LISTING, before, after, prefix="data/") == [
        "changed 'other.txt' not listed as saved",
        "deleted 'gone.txt' not listed as removed",
    ]


def test_owners_are_read_and_compared_only_when_asked(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "f").write_text("x")
    before = manifest_of(root)
    assert (before["f"].uid, before["f"].gid) == (str(os.getuid()), str(os.getgid()))
    after = {"f": dataclasses.replace(before["f"], uid="1234", gid="2345")}
    assert compare(before, after) == []
    assert compare(before, after, attributes=TREE_ATTRIBUTES + OWNER_ATTRIBUTES) == [
        f"'f': uid expected '{os.getuid()}', got '1234'",
        f"'f': gid expected '{os.getgid()}', got '2345'",
    ]
