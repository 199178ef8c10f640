"""The scenario's deterministic data set and its two rounds of changes.

This file is also sent whole to a container as `python3 -c SOURCE STEP ROOT` (the image's own
python3, nothing added to the image), so it imports only the standard library.
"""

from __future__ import annotations

import os
import random
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
    _touch_dirs(root, EPOCH + 10_000)


def change_for_diff(root: Path) -> None:
    """Modify, add, delete, retarget the symlink, break the hardlink."""
    rng = random.Random(SEED + 1)
    _write(root, "docs/readme.txt", _text(rng, 41), 0o644, EPOCH + 20_000)
    _write(root, "added/new-in-diff.txt", _text(rng, 3), 0o644, EPOCH + 20_100)
    (root / "docs/notes/note-3.txt").unlink()
    _link(root, "link-to-readme", "with space.txt", EPOCH + 20_050)
    (root / "hard-b.txt").unlink()
    _write(root, "hard-b.txt", _text(rng, 6), 0o644, EPOCH + 20_200)
    _touch_dirs(root, EPOCH + 21_000)


def change_for_incr(root: Path) -> None:
    """Modify again, add, delete what DIFF added, change a mode only, rename."""
    rng = random.Random(SEED + 2)
    _write(root, NFD_NAME, _text(rng, 9), 0o644, EPOCH + 30_000)
    _write(root, "added/new-in-incr.txt", _text(rng, 2), 0o600, EPOCH + 30_100)
    (root / "added/new-in-diff.txt").unlink()
    (root / "bin/run.sh").chmod(0o700)
    (root / "docs/notes/note-5.txt").rename(root / "docs/notes/note-5-renamed.txt")
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
