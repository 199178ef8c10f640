"""Manifests of directory trees, as containers print them, and their comparison. Pure functions.

A container prints `find -printf` records and, from its own python3, `sha256sum -z` lines and each
path's extended attributes (POSIX ACLs decoded into entries, any other value as its sha256), all
NUL-separated, so any file name (spaces, newlines, non-UTF-8 bytes) survives; comparisons name the
path, the attribute, what was expected and what came back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from ci.core.errors import OutputError

FIELDS_PER_ENTRY = 10
HASHES_MARKER = "==sha256=="
XATTRS_MARKER = "==xattrs=="
ACL_NAMES = {"system.posix_acl_access": "acl", "system.posix_acl_default": "default_acl"}

# Prints, after HASHES_MARKER, `SHA256  ./PATH` per regular file as `sha256sum -z` does, then,
# after XATTRS_MARKER, `PATH NAME VALUE` per extended attribute. A sparse file's holes are hashed
# as the zeros they read as, without reading them (SEEK_DATA/SEEK_HOLE): reading 64 MiB of holes
# cost more than the rest of a manifest. ACLs are decoded from their binary form (a version 2
# header, then 8-byte entries: tag, permissions, id) as `getfacl -n` would print them.
# No single quotes: it travels inside MANIFEST_SCRIPT's shell quoting.
_HASHES_AND_XATTRS = f"""
import errno, hashlib, os, stat, struct, sys
TAGS = {{1: "user:", 2: "user:", 4: "group:", 8: "group:", 16: "mask:", 32: "other:"}}
CHUNK = 1 << 20
ZEROS = memoryview(bytes(CHUNK))
def acl(value):
    entries = []
    for offset in range(4, len(value), 8):
        tag, perm, uid = struct.unpack_from("<HHI", value, offset)
        who = str(uid) if tag in (2, 8) else ""
        entries.append(TAGS[tag] + who + ":" + "".join(c if perm & b else "-" for c, b in zip("rwx", (4, 2, 1))))
    return ",".join(entries)
def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        fd, position = f.fileno(), 0
        size = os.fstat(fd).st_size
        while position < size:
            try:
                data = min(os.lseek(fd, position, os.SEEK_DATA), size)
            except OSError as err:
                if err.errno != errno.ENXIO:  # ENXIO: nothing but a hole up to the end
                    raise
                data = size
            while position < data:
                digest.update(ZEROS[: min(CHUNK, data - position)])
                position += min(CHUNK, data - position)
            if position >= size:
                break
            hole = min(os.lseek(fd, position, os.SEEK_HOLE), size)
            if hole <= position:
                raise OSError(f"{{path!r}}: no data at {{position}} after SEEK_DATA found some")
            os.lseek(fd, position, os.SEEK_SET)
            while position < hole:
                chunk = os.read(fd, min(CHUNK, hole - position))
                if not chunk:
                    break
                digest.update(chunk)
                position += len(chunk)
    return digest.hexdigest()
out = sys.stdout.buffer
paths = [os.path.join(top, name) for top, dirs, files in os.walk(b".") for name in dirs + files]
out.write(b"{HASHES_MARKER}\\0")
for path in paths:
    if stat.S_ISREG(os.lstat(path).st_mode):
        out.write(sha256(path).encode() + b"  " + path + b"\\0")
out.write(b"{XATTRS_MARKER}\\0")
for path in paths:
    for attr in sorted(os.listxattr(path, follow_symlinks=False)):
        value = os.getxattr(path, attr, follow_symlinks=False)
        shown = acl(value) if attr.startswith("system.posix_acl_") else hashlib.sha256(value).hexdigest()
        out.write(path[2:] + b"\\0" + attr.encode() + b"\\0" + shown.encode() + b"\\0")
"""

# Run in a container as: sh -c MANIFEST_SCRIPT sh DIR (with the image's find and python3)
MANIFEST_SCRIPT = (
    'cd "$1" && find . -mindepth 1 -printf "%y\\0%P\\0%m\\0%T@\\0%i\\0%l\\0%U\\0%G\\0%s\\0%b\\0" && '
    f"python3 -c '{_HASHES_AND_XATTRS}'"
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
    size: str = ""
    # 512-byte blocks allocated: what tells a sparse file from its copy with the holes filled in.
    blocks: str = ""
    # `user.*` and other attributes as `name=sha256`, sorted, comma-separated; ACLs as their entries.
    xattrs: str = ""
    acl: str = ""
    default_acl: str = ""


Manifest = Mapping[str, Entry]


def parse(text: str) -> dict[str, Entry]:
    """Parse what MANIFEST_SCRIPT printed."""
    listing, marker, rest = text.partition(f"{HASHES_MARKER}\0")
    if not marker:
        raise OutputError("manifest has no hash section (did find or python3 fail?)")
    hashes, marker, xattr_text = rest.partition(f"{XATTRS_MARKER}\0")
    if not marker:
        raise OutputError("manifest has no xattr section (did python3 fail?)")
    fields = listing.split("\0")
    if fields[-1] != "" or (len(fields) - 1) % FIELDS_PER_ENTRY:
        raise OutputError(f"manifest listing has {len(fields) - 1} fields, not a multiple of {FIELDS_PER_ENTRY}")
    sums: dict[str, str] = {}
    for record in filter(None, hashes.split("\0")):
        digest, sep, name = record.partition("  ")
        if not sep or len(digest) != 64:
            raise OutputError(f"bad sha256sum record {record[:80]!r}")
        sums[name.removeprefix("./")] = digest
    xattrs = _xattrs(xattr_text)
    entries: dict[str, Entry] = {}
    for i in range(0, len(fields) - 1, FIELDS_PER_ENTRY):
        kind, path, mode, mtime, inode, target, uid, gid, size, blocks = fields[i : i + FIELDS_PER_ENTRY]
        attrs = xattrs.get(path, {})
        entries[path] = Entry(
            kind,
            mode,
            mtime,
            inode,
            target,
            uid,
            gid,
            sums.get(path, ""),
            size,
            blocks,
            ",".join(f"{name}={value}" for name, value in sorted(attrs.items()) if name not in ACL_NAMES),
            attrs.get("system.posix_acl_access", ""),
            attrs.get("system.posix_acl_default", ""),
        )
    return entries


def _xattrs(text: str) -> dict[str, dict[str, str]]:
    fields = text.split("\0")
    if fields[-1] != "" or (len(fields) - 1) % 3:
        raise OutputError(f"manifest xattr section has {len(fields) - 1} fields, not a multiple of 3")
    found: dict[str, dict[str, str]] = {}
    for i in range(0, len(fields) - 1, 3):
        path, name, value = fields[i : i + 3]
        found.setdefault(path, {})[name] = value
    return found


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
# mtimes are compared as find prints them, to the nanosecond: dar reads and writes them so
# (the feature gate requires dar -V to say "1 nanosecond" for both).
TREE_ATTRIBUTES = ("kind", "sha256", "mode", "mtime", "target", "xattrs", "acl", "default_acl")
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
    problems += [
        problem for path in sorted(expected.keys() & got.keys()) for problem in _sparse(path, expected[path], got[path])
    ]
    want_groups, have_groups = hardlink_groups(expected), hardlink_groups(got)
    problems += [f"hardlink group lost: {sorted(g)}" for g in sorted(want_groups - have_groups, key=sorted)]
    problems += [f"hardlink group unexpected: {sorted(g)}" for g in sorted(have_groups - want_groups, key=sorted)]
    return problems


# A sparse file's copy may allocate a little more than its source (a partly filled block at an
# extent's edge, an extended attribute's block), never its holes: 10 % and 64 KiB of slack.
SPARSE_SLACK_BLOCKS = 128


def is_sparse(entry: Entry) -> bool:
    return entry.kind == "f" and entry.size.isdigit() and int(entry.blocks or 0) * 512 < int(entry.size)


def _sparse(path: str, want: Entry, have: Entry) -> list[str]:
    """A file that was sparse still is: its allocated blocks within the tolerance of the source's."""
    if not is_sparse(want):
        return []
    allowed = int(want.blocks) + int(want.blocks) // 10 + SPARSE_SLACK_BLOCKS
    if have.blocks.isdigit() and int(have.blocks) <= allowed:
        return []
    return [f"{path!r}: blocks expected {want.blocks!r} (sparse, at most {allowed}), got {have.blocks!r}"]


def as_point_in_time_restores(expected: Manifest, earlier: Sequence[Manifest]) -> dict[str, Entry]:
    """`expected` as `manager --when` restores it (dar-backup 1.1.11): xattrs removed at a later level come back.

    It lays each archive's extended attributes over the previous one's without erasing any, so a
    file keeps every attribute name it had anywhere in the chain, with its latest value.
    `earlier` are the snapshots of the levels before, oldest first.
    """
    restored = dict(expected)
    for path, entry in expected.items():
        names = _pairs(entry.xattrs)
        for snapshot in reversed(earlier):
            if path in snapshot:
                for name, value in _pairs(snapshot[path].xattrs).items():
                    names.setdefault(name, value)
        xattrs = ",".join(f"{name}={value}" for name, value in sorted(names.items()))
        if xattrs != entry.xattrs:
            restored[path] = replace(entry, xattrs=xattrs)
    return restored


def _pairs(xattrs: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in xattrs.split(",") if pair)


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
