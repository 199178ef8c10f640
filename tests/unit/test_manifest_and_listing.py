import dataclasses
import hashlib
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
    SPARSE_SLACK_BLOCKS,
    TREE_ATTRIBUTES,
    XATTRS_MARKER,
    Entry,
    as_point_in_time_restores,
    changed_paths,
    compare,
    empty_dirs,
    hardlink_groups,
    is_sparse,
    parse,
)


def manifest_of(root) -> dict[str, Entry]:
    """The real MANIFEST_SCRIPT, run here with the host's find and python3."""
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


def test_hashes_are_what_sha256sum_says_holes_and_all(tmp_path):
    """Holes are hashed as the zeros they read as: wherever they are, however long."""
    shapes = {
        "empty": [],
        "dense": [(0, b"x" * 5000)],
        "hole first": [(3 * 2**20, b"data after a hole")],
        "hole last": [(0, b"data"), (5 * 2**20 + 17, b"")],
        "holes between": [(0, b"a" * 4096), (2**20, b"b" * 100), (3 * 2**20 + 1, b"c" * 70000), (8 * 2**20, b"")],
        "only a hole": [(2**21 + 3, b"")],
    }
    for name, pieces in shapes.items():
        with open(tmp_path / name, "wb") as handle:
            for offset, data in pieces:
                handle.seek(offset)
                handle.write(data)
                handle.truncate(max(offset + len(data), handle.tell()))
    (tmp_path / "link").symlink_to("dense")
    os.mkfifo(tmp_path / "fifo")
    manifest = manifest_of(tmp_path)
    for name in shapes:
        stated = subprocess.run(["sha256sum", name], cwd=tmp_path, capture_output=True, text=True, check=True)
        assert manifest[name].sha256 == stated.stdout.split()[0], name
    # This file system keeps the holes, so hashing skipped them (a filled-in file has every block).
    assert int(manifest["holes between"].blocks) * 512 < int(manifest["holes between"].size) // 2
    assert (manifest["link"].sha256, manifest["fifo"].sha256) == ("", "")


def test_truncated_manifest_is_an_error():
    with pytest.raises(OutputError, match="no hash section"):
        parse("f\0a\0644\01.0\01\0\0")
    with pytest.raises(OutputError, match="multiple"):
        parse(f"f\0a\0644\0{HASHES_MARKER}\0{XATTRS_MARKER}\0")


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


@pytest.fixture(scope="module")
def three_levels(tmp_path_factory) -> tuple[dict[str, Entry], dict[str, Entry], dict[str, Entry]]:
    """The data set's three snapshots, taken with the real MANIFEST_SCRIPT on this file system."""
    root = tmp_path_factory.mktemp("levels")
    snapshots = []
    for step in (dataset.initial, dataset.change_for_diff, dataset.change_for_incr):
        step(root)
        snapshots.append(manifest_of(root))
    return snapshots[0], snapshots[1], snapshots[2]


def test_the_data_set_holds_xattrs_acls_a_sparse_file_a_fifo_and_nanoseconds(three_levels):
    full, _, _ = three_levels
    tagged = full["meta/xattrs.txt"]
    assert [pair.split("=")[0] for pair in tagged.xattrs.split(",")] == [
        "user.binary",
        "user.changed-at-diff",
        "user.comment",
        "user.removed-at-incr",
    ]
    assert full["meta/empty-with-xattrs"].xattrs.startswith("user.only=")
    assert full["meta/empty-with-xattrs"].sha256 == hashlib.sha256(b"").hexdigest()
    assert full["meta/acl.txt"].acl == "user::rw-,user:1001:r--,group::r--,group:1002:rw-,mask::rw-,other::r--"
    assert full["meta/acl.txt"].mode == "664"  # the mask is the group bits
    assert full["meta/acl-dir"].default_acl.startswith("user::rw-,user:1001:rwx,")
    sparse = full["sparse.img"]
    assert is_sparse(sparse) and int(sparse.size) == 64 * 2**20 and int(sparse.blocks) * 512 <= 4 * 2**20
    assert full["meta/fifo"].kind == "p"
    assert full["meta/nanoseconds.txt"].mtime == "1700009720.1234567890"


def test_metadata_only_changes_keep_content_and_mtime(three_levels):
    full, diff, incr = three_levels
    for before, after in ((full, diff), (diff, incr)):
        assert (before["meta/xattrs.txt"].sha256, before["meta/xattrs.txt"].mtime) == (
            after["meta/xattrs.txt"].sha256,
            after["meta/xattrs.txt"].mtime,
        )
        assert "meta/xattrs.txt" not in changed_paths(before, after)[0]
    assert [p for p in compare(full, diff) if p.startswith("'meta/") and "mtime" not in p] == [
        f"'meta/xattrs.txt': xattrs expected {full['meta/xattrs.txt'].xattrs!r}, got {diff['meta/xattrs.txt'].xattrs!r}"
    ]
    assert "user.removed-at-incr" in diff["meta/xattrs.txt"].xattrs
    assert "user.removed-at-incr" not in incr["meta/xattrs.txt"].xattrs
    assert (
        incr["meta/acl.txt"].acl
        == "user::rw-,user:1001:rw-,user:1003:r--,group::r--,group:1002:rw-,mask::rw-,other::r--"
    )
    assert incr["meta/acl.txt"].mtime == diff["meta/acl.txt"].mtime


def test_a_restore_that_drops_xattrs_is_named(three_levels):
    full, _, _ = three_levels
    dropped = {path: dataclasses.replace(entry, xattrs="") for path, entry in full.items()}
    problems = compare(full, dropped)
    assert f"'meta/empty-with-xattrs': xattrs expected {full['meta/empty-with-xattrs'].xattrs!r}, got ''" in problems
    assert len(problems) == 2


def test_a_restore_that_loses_an_acl_is_named(three_levels):
    _, _, incr = three_levels
    lost = {**incr, "meta/acl.txt": dataclasses.replace(incr["meta/acl.txt"], acl="")}
    assert compare(incr, lost) == [f"'meta/acl.txt': acl expected {incr['meta/acl.txt'].acl!r}, got ''"]
    no_default = {**incr, "meta/acl-dir": dataclasses.replace(incr["meta/acl-dir"], default_acl="")}
    assert [p.split(" expected")[0] for p in compare(incr, no_default)] == ["'meta/acl-dir': default_acl"]


def test_a_restore_that_fills_a_sparse_file_is_named(three_levels, tmp_path):
    full, _, _ = three_levels
    filled = tmp_path / "filled.img"
    filled.write_bytes(bytes(64 * 2**20))  # what a copy that writes the holes out allocates
    blocks = str(filled.stat().st_blocks)
    unsparse = {**full, "sparse.img": dataclasses.replace(full["sparse.img"], blocks=blocks)}
    allowed = int(full["sparse.img"].blocks) * 11 // 10 + SPARSE_SLACK_BLOCKS
    assert compare(full, unsparse) == [
        f"'sparse.img': blocks expected {full['sparse.img'].blocks!r} (sparse, at most {allowed}), got {blocks!r}"
    ]
    within = {**full, "sparse.img": dataclasses.replace(full["sparse.img"], blocks=str(allowed))}
    assert compare(full, within) == []


def test_a_manifest_without_its_xattr_section_is_an_error():
    with pytest.raises(OutputError, match="no xattr section"):
        parse(f"{HASHES_MARKER}\0")
    with pytest.raises(OutputError, match="xattr section has 2 fields"):
        parse(f"{HASHES_MARKER}\0{XATTRS_MARKER}\0a\0user.x\0")


def test_point_in_time_restores_bring_back_xattrs_removed_at_a_later_level(three_levels):
    full, diff, incr = three_levels
    restores = as_point_in_time_restores(incr, [full, diff])
    changed = {path for path in incr if restores[path] != incr[path]}
    assert changed == {"meta/xattrs.txt"}
    removed = next(p for p in diff["meta/xattrs.txt"].xattrs.split(",") if p.startswith("user.removed-at-incr="))
    assert removed in restores["meta/xattrs.txt"].xattrs.split(",")
    want, got = restores["meta/xattrs.txt"].xattrs, incr["meta/xattrs.txt"].xattrs
    assert compare(restores, incr) == [f"'meta/xattrs.txt': xattrs expected {want!r}, got {got!r}"]
    assert as_point_in_time_restores(diff, [full]) == diff  # the value changed at DIFF is DIFF's
