"""`scripts/dev vuln-db`: what it downloads, what it records, and that a failed download keeps nothing."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci.core.config import REPO_ROOT
from ci.core.errors import StageFailure, UsageError
from ci.image import vulndb, vulns
from tests.support.vulndb import damage_first_record, record, write_db


def test_the_default_archives_are_pypi_and_the_base_image_s_distribution():
    assert vulndb.default_ecosystems("ubuntu:24.04") == ["PyPI", "Ubuntu"]
    assert vulndb.default_ecosystems("docker.io/library/debian:bookworm-slim") == ["PyPI", "Debian"]
    assert vulndb.default_ecosystems("debian@sha256:" + "a" * 64) == ["PyPI", "Debian"]
    with pytest.raises(UsageError, match="which OSV ecosystem is alpine:3's"):
        vulndb.default_ecosystems("alpine:3")


def test_the_archive_url_and_its_date():
    assert vulndb.archive_url(vulns.DATABASE_URI + "/", "PyPI") == f"{vulns.DATABASE_URI}/PyPI/all.zip"
    now = dt.datetime(2026, 12, 1, 5, 0, tzinfo=dt.UTC)
    assert vulndb.archive_date({"Last-Modified": "Mon, 30 Nov 2026 22:10:05 GMT"}, now) == "2026-11-30T22:10:05Z"
    assert vulndb.archive_date({}, now) == "2026-12-01T05:00:00Z"


@pytest.fixture
def bucket(tmp_path) -> Iterator[str]:
    """The OSV bucket's layout, served from 127.0.0.1: Debian and PyPI archives, and a corrupt Ubuntu one."""
    root = write_db(tmp_path / "bucket", [record("TEST-DAR-1", "Debian", "dar", "2.7.9-1")])
    (root / "Ubuntu").mkdir()
    (root / "Ubuntu/all.zip").write_bytes(b"PK\x03\x04 half an archive")
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_writes_each_archive_and_the_manifest_last(tmp_path, bucket):
    where = tmp_path / "db"
    manifest = vulndb.download(where, ["Debian", "PyPI"], bucket)
    assert set(manifest) == {"Debian", "PyPI"}
    assert manifest["Debian"]["url"] == f"{bucket}/Debian/all.zip"
    assert json.loads((where / vulns.MANIFEST).read_text()) == manifest
    # What was downloaded is what the scan reads, dated as the bucket dated it.
    archives = vulns.check_archives(where, ["Debian", "PyPI"])
    assert {a.ecosystem: a.date for a in archives} == {k: v["date"] for k, v in manifest.items()}
    assert sorted(p.name for p in (where / "Debian").iterdir()) == ["all.zip"]


@pytest.mark.parametrize(
    ("ecosystems", "message"),
    [
        (["PyPI", "Ubuntu"], "Ubuntu/all.zip is not a whole zip archive"),
        (["PyPI", "Debian"], "Debian/all.zip is not a whole zip archive"),
        (["Debian"], None),
    ],
)
def test_a_failed_or_corrupt_download_keeps_nothing_and_writes_no_manifest(tmp_path, bucket, ecosystems, message):
    where = tmp_path / "db"
    if ecosystems == ["PyPI", "Debian"]:
        damage_first_record(tmp_path / "bucket/Debian/all.zip")
    if message is None:  # the bucket is gone
        bucket, message = "http://127.0.0.1:9", "downloading http://127.0.0.1:9/Debian/all.zip failed"
    with pytest.raises(StageFailure, match=message):
        vulndb.download(where, ecosystems, bucket)
    assert not (where / vulns.MANIFEST).exists()
    leftovers = [p.name for p in where.rglob("*") if p.is_file()] if where.exists() else []
    assert leftovers == (["all.zip"] if ecosystems[0] == "PyPI" else [])


def test_the_command_refuses_unknown_ecosystems_and_a_missing_directory_with_one_line():
    for argv, code, line in [
        ([], 2, "error: usage: scripts/dev vuln-db DIR"),
        (["db", "Alpine"], 2, "error: unknown OSV ecosystems ['Alpine']"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "ci.image.vulndb", *argv], cwd=REPO_ROOT, capture_output=True, text=True
        )
        assert done.returncode == code and done.stderr.startswith(line), done.stderr
    assert not Path(REPO_ROOT / "db").exists()
