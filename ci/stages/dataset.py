"""The scenario's deterministic data set and its two rounds of changes.

This file is also sent whole to a container as `python3 -c SOURCE STEP ROOT` (the image's own
python3, nothing added to the image), so it imports only the standard library.
"""

from __future__ import annotations

import os
import random
import struct
import sys
import unicodedata
from pathlib import Path

SEED = 20_250_611
BIG_FILE_MIB = 18  # inside dar-backup's 1-20 MiB restore-test window
EPOCH = 1_700_000_000
NFC_NAME = unicodedata.normalize("NFC", "unicode/café.txt")
NFD_NAME = unicodedata.normalize("NFD", "unicode/café.txt")
ODD_NAMES = (
    "with space.txt",
    "meta/$HOME 'quoted' *star*; semi.txt",
    "-leading-dash.txt",
    NFC_NAME,
    NFD_NAME,
)


# A sparse file: 64 MiB apparent, 3 MiB of data in three extents (the last one ends the file).
SPARSE_MIB = 64
SPARSE_EXTENTS_MIB = (4, 30, SPARSE_MIB - 1)
# Named ids in the ACLs: no such users need to exist, an ACL names ids.
ACL_USER, ACL_GROUP, ACL_OTHER_USER = 1001, 1002, 1003
_ACL_TAGS = {"user": 0x01, "named-user": 0x02, "group": 0x04, "named-group": 0x08, "mask": 0x10, "other": 0x20}
_NO_ID = 0xFFFFFFFF
# Sub-second mtimes: dar reads and writes them to the nanosecond (dar -V says so; the gate requires it).
NANOS = 123_456_789


def _acl(*entries: tuple[str, int, int | None]) -> bytes:
    """The `system.posix_acl_*` xattr value: version 2, then (tag, permissions, id) in the kernel's order."""
    packed = (struct.pack("<HHI", _ACL_TAGS[tag], perm, _NO_ID if uid is None else uid) for tag, perm, uid in entries)
    return struct.pack("<I", 2) + b"".join(packed)


def _access_acl(named_user_perm: int, *more: tuple[str, int, int | None]) -> bytes:
    return _acl(
        ("user", 6, None),
        ("named-user", named_user_perm, ACL_USER),
        *more,
        ("group", 4, None),
        ("named-group", 6, ACL_GROUP),
        ("mask", 6, None),
        ("other", 4, None),
    )


def _text(rng: random.Random, lines: int) -> bytes:
    words = ("dar", "par2", "backup", "restore", "slice", "catalog", "archive", "diff", "incr")
    return "".join(" ".join(rng.choices(words, k=8)) + "\n" for _ in range(lines)).encode()


def _write(root: Path, relative: str, data: bytes, mode: int, mtime: int) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))


def _link(root: Path, relative: str, target: str, mtime: int) -> None:
    link = root / relative
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    os.utime(link, ns=(mtime * 10**9, mtime * 10**9), follow_symlinks=False)


def _touch_dirs(root: Path, mtime: int) -> None:
    # Fixed directory mtimes (deepest first) so two generations are equal to the nanosecond.
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        os.utime(directory, ns=(mtime * 10**9, mtime * 10**9))


def initial(root: Path) -> None:
    rng = random.Random(SEED)
    _write(root, "docs/readme.txt", _text(rng, 40), 0o644, EPOCH)
    for i in range(8):
        _write(root, f"docs/notes/note-{i}.txt", _text(rng, 5 + i), 0o640, EPOCH + 60 * i)
    _write(root, "big.bin", rng.randbytes(BIG_FILE_MIB * 2**20), 0o600, EPOCH + 3600)
    _write(root, "a/b/c/d/deep.txt", _text(rng, 3), 0o444, EPOCH + 7200)
    _write(root, "bin/run.sh", b"#!/bin/sh\necho backup\n", 0o755, EPOCH + 7300)
    _write(root, "empty.txt", b"", 0o644, EPOCH + 7400)
    (root / "empty-dir").mkdir()
    for i, name in enumerate(ODD_NAMES):
        _write(root, name, _text(rng, 2 + i), 0o644, EPOCH + 8000 + i)
    _write(root, "hard-a.txt", _text(rng, 4), 0o644, EPOCH + 9000)
    os.link(root / "hard-a.txt", root / "hard-b.txt")
    _link(root, "link-to-readme", "docs/readme.txt", EPOCH + 9100)
    _link(root, "dangling-link", "does/not/exist", EPOCH + 9200)
    (root / "private").mkdir(mode=0o700)
    _write(root, "private/secret.txt", _text(rng, 2), 0o600, EPOCH + 9500)
    _metadata(root, rng)
    _touch_dirs(root, EPOCH + 10_000)


def _metadata(root: Path, rng: random.Random) -> None:
    """Extended attributes, POSIX ACLs, a sparse file, a FIFO and sub-second mtimes."""
    tagged = root / "meta/xattrs.txt"
    _write(root, "meta/xattrs.txt", _text(rng, 3), 0o644, EPOCH + 9600)
    os.setxattr(tagged, "user.comment", b"backed up by dar")
    os.setxattr(tagged, "user.binary", bytes(range(256)))
    os.setxattr(tagged, "user.changed-at-diff", b"first value")
    os.setxattr(tagged, "user.removed-at-incr", b"here until INCR")
    _write(root, "meta/empty-with-xattrs", b"", 0o644, EPOCH + 9610)
    os.setxattr(root / "meta/empty-with-xattrs", "user.only", b"no data, only this")
    _write(root, "meta/acl.txt", _text(rng, 2), 0o644, EPOCH + 9620)
    os.setxattr(root / "meta/acl.txt", "system.posix_acl_access", _access_acl(4))
    (root / "meta/acl-dir").mkdir()
    os.setxattr(root / "meta/acl-dir", "system.posix_acl_default", _access_acl(7))
    # Created below the default ACL, so it inherits an access ACL; not empty, so `dar-backup -r` restores it.
    _write(root, "meta/acl-dir/inherits.txt", _text(rng, 2), 0o640, EPOCH + 9630)
    sparse = root / "sparse.img"
    with sparse.open("wb") as handle:
        handle.truncate(SPARSE_MIB * 2**20)
        for mib in SPARSE_EXTENTS_MIB:
            handle.seek(mib * 2**20)
            handle.write(_text(rng, 40_000)[: 2**20])
    os.utime(sparse, ns=((EPOCH + 9700) * 10**9 + NANOS, (EPOCH + 9700) * 10**9 + NANOS))
    os.mkfifo(root / "meta/fifo", 0o640)
    os.utime(root / "meta/fifo", ns=((EPOCH + 9710) * 10**9, (EPOCH + 9710) * 10**9))
    _write(root, "meta/nanoseconds.txt", _text(rng, 2), 0o644, EPOCH + 9720)
    os.utime(root / "meta/nanoseconds.txt", ns=((EPOCH + 9720) * 10**9 + NANOS, (EPOCH + 9720) * 10**9 + NANOS))


def change_for_diff(root: Path) -> None:
    """Modify, add, delete, retarget the symlink, break the hardlink."""
    rng = random.Random(SEED + 1)
    _write(root, "docs/readme.txt", _text(rng, 41), 0o644, EPOCH + 20_000)
    _write(root, "added/new-in-diff.txt", _text(rng, 3), 0o644, EPOCH + 20_100)
    (root / "docs/notes/note-3.txt").unlink()
    _link(root, "link-to-readme", "with space.txt", EPOCH + 20_050)
    (root / "hard-b.txt").unlink()
    _write(root, "hard-b.txt", _text(rng, 6), 0o644, EPOCH + 20_200)
    # Metadata only: setting an xattr changes ctime, not content or mtime (the unit tests check).
    os.setxattr(root / "meta/xattrs.txt", "user.changed-at-diff", b"second value")
    _touch_dirs(root, EPOCH + 21_000)


def change_for_incr(root: Path) -> None:
    """Modify again, add, delete what DIFF added, change a mode only, rename."""
    rng = random.Random(SEED + 2)
    _write(root, NFD_NAME, _text(rng, 9), 0o644, EPOCH + 30_000)
    _write(root, "added/new-in-incr.txt", _text(rng, 2), 0o600, EPOCH + 30_100)
    (root / "added/new-in-diff.txt").unlink()
    (root / "bin/run.sh").chmod(0o700)
    (root / "docs/notes/note-5.txt").rename(root / "docs/notes/note-5-renamed.txt")
    os.removexattr(root / "meta/xattrs.txt", "user.removed-at-incr")
    acl = _access_acl(6, ("named-user", 4, ACL_OTHER_USER))
    os.setxattr(root / "meta/acl.txt", "system.posix_acl_access", acl)
    _touch_dirs(root, EPOCH + 31_000)


STEPS = {"initial": initial, "change_for_diff": change_for_diff, "change_for_incr": change_for_incr}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in STEPS:
        print(f"usage: dataset.py {{{'|'.join(STEPS)}}} ROOT", file=sys.stderr)
        return 2
    STEPS[argv[1]](Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
