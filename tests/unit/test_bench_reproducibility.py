"""The benchmark's comparison of two builds: which entries of a layer differ, and in what."""

import io
import tarfile
from pathlib import Path

from bench.build import config_differences, entry_differences, layer_entries


def layer(path: Path, files: dict[str, tuple[bytes, int, int]]) -> tarfile.TarFile:
    """A layer tar of files {name: (content, mtime, uid)}, plus a symlink `link` to `a`."""
    with tarfile.open(path, "w") as out:
        for name, (content, mtime, uid) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.uid = len(content), mtime, uid
            out.addfile(info, io.BytesIO(content))
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "a"
        out.addfile(link)
    return tarfile.open(path)


def test_each_differing_entry_says_what_differs(tmp_path: Path):
    one = layer(tmp_path / "1.tar", {"a": (b"x", 1, 0), "b": (b"y", 1, 0), "c": (b"z", 1, 0), "gone": (b"", 1, 0)})
    two = layer(tmp_path / "2.tar", {"a": (b"x", 1, 0), "b": (b"Y", 2, 0), "c": (b"z", 1, 1000), "new": (b"", 1, 0)})
    assert entry_differences(layer_entries(one), layer_entries(two)) == [
        "b: content, mtime",
        "c: owner/mode",
        "gone: only in build 1",
        "new: only in build 2",
    ]


def test_identical_layers_have_no_differences(tmp_path: Path):
    files = {"a": (b"x", 1, 0)}
    assert (
        entry_differences(
            layer_entries(layer(tmp_path / "1.tar", files)), layer_entries(layer(tmp_path / "2.tar", files))
        )
        == []
    )


def test_config_differences_are_json_paths():
    one = {"created": "1", "history": [{"created": "a", "created_by": "RUN x"}], "rootfs": {"diff_ids": ["s", "t"]}}
    two = {"created": "2", "history": [{"created": "b", "created_by": "RUN x"}], "rootfs": {"diff_ids": ["s", "u"]}}
    assert config_differences(one, two) == ["created", "history[0].created", "rootfs.diff_ids[1]"]
    assert config_differences(one, one) == []
