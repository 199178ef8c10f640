"""Manifests of directory trees, as containers print them, and their comparison. Pure functions.

A container prints `find -printf` records and `sha256sum -z` lines, all NUL-separated, so any
file name (spaces, newlines, non-UTF-8 bytes) survives; comparisons name the path, the
attribute, what was expected and what came back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ci.core.errors import OutputError

FIELDS_PER_ENTRY = 8
HASHES_MARKER = "==sha256=="

# Run in a container as: sh -c MANIFEST_SCRIPT sh DIR
MANIFEST_SCRIPT = (
    'cd "$1" && find . -mindepth 1 -printf "%y\\0%P\\0%m\\0%T@\\0%i\\0%l\\0%U\\0%G\\0" && '
    f'printf "{HASHES_MARKER}\\0" && find . -type f -print0 | xargs -0 -r sha256sum -z'
)


@dataclass(frozen=True)
class Entry:
    kind: str
    mode: str
    mtime: str
    inode: str
    target: str
    uid: str = ""
    gid: str = ""
    sha256: str = ""


Manifest = Mapping[str, Entry]


def parse(text: str) -> dict[str, Entry]:
    """Parse what MANIFEST_SCRIPT printed."""
    listing, marker, hashes = text.partition(f"{HASHES_MARKER}\0")
    if not marker:
        raise OutputError("manifest has no hash section (did the listing command fail?)")
    fields = listing.split("\0")
    if fields[-1] != "" or (len(fields) - 1) % FIELDS_PER_ENTRY:
        raise OutputError(f"manifest listing has {len(fields) - 1} fields, not a multiple of {FIELDS_PER_ENTRY}")
    sums: dict[str, str] = {}
    for record in filter(None, hashes.split("\0")):
        digest, sep, name = record.partition("  ")
        if not sep or len(digest) != 64:
            raise OutputError(f"bad sha256sum record {record[:80]!r}")
        sums[name.removeprefix("./")] = digest
    entries: dict[str, Entry] = {}
    for i in range(0, len(fields) - 1, FIELDS_PER_ENTRY):
        kind, path, mode, mtime, inode, target, uid, gid = fields[i : i + FIELDS_PER_ENTRY]
        entries[path] = Entry(kind, mode, mtime, inode, target, uid, gid, sums.get(path, ""))
    return entries


def hardlink_groups(manifest: Manifest) -> set[frozenset[str]]:
    """Sets of regular-file paths that share an inode (only groups of two or more)."""
    by_inode: dict[str, set[str]] = {}
    for path, entry in manifest.items():
        if entry.kind == "f":
            by_inode.setdefault(entry.inode, set()).add(path)
    return {frozenset(paths) for paths in by_inode.values() if len(paths) > 1}


def empty_dirs(manifest: Manifest) -> set[str]:
    """Directories with nothing below them."""
    parents = {path.rpartition("/")[0] for path in manifest if "/" in path}
    return {path for path, entry in manifest.items() if entry.kind == "d" and path not in parents}


# Owners are compared only where the restore ran as root: nobody else can recreate them.
TREE_ATTRIBUTES = ("kind", "sha256", "mode", "mtime", "target")
OWNER_ATTRIBUTES = ("uid", "gid")


def compare(
    expected: Manifest,
    got: Manifest,
    *,
    attributes: Iterable[str] = TREE_ATTRIBUTES,
    may_be_missing: Iterable[str] = (),
) -> list[str]:
    """Every difference, one readable line each; empty when the trees are equal."""
    expected = {path: entry for path, entry in expected.items() if path in got or path not in set(may_be_missing)}
    problems = [f"missing: {p!r}" for p in sorted(expected.keys() - got.keys())]
    problems += [f"unexpected: {p!r} ({got[p].kind})" for p in sorted(got.keys() - expected.keys())]
    for path in sorted(expected.keys() & got.keys()):
        want, have = expected[path], got[path]
        for attribute in attributes:
            a, b = getattr(want, attribute), getattr(have, attribute)
            if a != b:
                problems.append(f"{path!r}: {attribute} expected {a!r}, got {b!r}")
    want_groups, have_groups = hardlink_groups(expected), hardlink_groups(got)
    problems += [f"hardlink group lost: {sorted(g)}" for g in sorted(want_groups - have_groups, key=sorted)]
    problems += [f"hardlink group unexpected: {sorted(g)}" for g in sorted(have_groups - want_groups, key=sorted)]
    return problems


DATA_ATTRIBUTES = ("kind", "sha256", "target", "mtime")


def changed_paths(
    before: Manifest, after: Manifest, *, attributes: Iterable[str] = DATA_ATTRIBUTES
) -> tuple[set[str], set[str]]:
    """(added or changed in any of `attributes`, removed) paths between two snapshots; directories left out.

    The default attributes are those that make dar save a file's data again; a change of
    mode alone is saved as metadata and does not show as [Saved] in a listing.
    """
    wanted = tuple(attributes)
    touched = {
        path
        for path, entry in after.items()
        if entry.kind != "d"
        and (path not in before or any(getattr(before[path], a) != getattr(entry, a) for a in wanted))
    }
    return touched, set(before) - set(after)
