"""`scripts/dev vuln-db DIR [ECOSYSTEM…]`: the OSV archives an image needs, downloaded for an offline scan.

Each archive comes from the OSV bucket (`<bucket>/<Ecosystem>/all.zip`), is checked as a whole
zip and renamed into `DIR/<Ecosystem>/all.zip`; `DIR/osv-db.json` records each one's date (the
bucket's Last-Modified), sha256 and URL, and is written last. A failed download leaves nothing
half-written and exits 1 naming the URL. The default ecosystems: PyPI (the venv) and the
distribution of the base image (`BASE_IMAGE`, default ubuntu:24.04).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ci.core.baseimage import DEFAULT_BASE_IMAGE
from ci.core.errors import PipelineError, StageFailure, UsageError
from ci.core.files import write_atomically
from ci.core.log import error, say
from ci.image.vulns import DATABASE_URI, ECOSYSTEMS, MANIFEST

KNOWN = sorted(set(ECOSYSTEMS.values()))
DISTRIBUTIONS = {"ubuntu": "Ubuntu", "debian": "Debian"}
# (url) → (body, headers): urllib by default; the tests serve the bucket from 127.0.0.1.
Fetch = Callable[[str], tuple[bytes, Mapping[str, str]]]


def default_ecosystems(base_image: str) -> list[str]:
    """PyPI and the base image's distribution (`ubuntu:24.04` → Ubuntu)."""
    name = base_image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    distribution = DISTRIBUTIONS.get(name)
    if distribution is None:
        raise UsageError(f"which OSV ecosystem is {base_image}'s? name them: scripts/dev vuln-db DIR {' '.join(KNOWN)}")
    return ["PyPI", distribution]


def archive_url(bucket: str, ecosystem: str) -> str:
    return f"{bucket.rstrip('/')}/{ecosystem}/all.zip"


def archive_date(headers: Mapping[str, str], now: dt.datetime) -> str:
    """The bucket's Last-Modified as RFC 3339 UTC; the download time when it sends none."""
    stamp = headers.get("Last-Modified")
    when = email.utils.parsedate_to_datetime(stamp) if stamp else now
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fetch_url(url: str) -> tuple[bytes, Mapping[str, str]]:
    with urllib.request.urlopen(url, timeout=600) as response:  # noqa: S310 (an https URL, or the tests' loopback)
        return response.read(), dict(response.headers)


def download(
    where: Path, ecosystems: Sequence[str], bucket: str = DATABASE_URI, fetch: Fetch = fetch_url
) -> dict[str, dict[str, str]]:
    """Every archive into where/<Ecosystem>/all.zip, checked whole, then the manifest; returns the manifest."""
    unknown = sorted(set(ecosystems) - set(KNOWN))
    if unknown:
        raise UsageError(f"unknown OSV ecosystems {unknown}: the image's are {', '.join(KNOWN)}")
    manifest: dict[str, dict[str, str]] = {}
    for ecosystem in ecosystems:
        url = archive_url(bucket, ecosystem)
        try:
            body, headers = fetch(url)
        except (urllib.error.URLError, OSError) as err:
            raise StageFailure(f"downloading {url} failed: {err}") from None
        target = where / ecosystem / "all.zip"
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".all.zip.", delete=False) as handle:
            handle.write(body)
        partial = Path(handle.name)
        try:
            with zipfile.ZipFile(partial) as archive:
                bad = archive.testzip()
            if bad is not None:
                raise StageFailure(f"{url} is corrupt at {bad}")
        except (zipfile.BadZipFile, zlib.error) as err:
            partial.unlink()
            raise StageFailure(f"{url} is not a whole zip archive: {err}") from None
        except BaseException:
            partial.unlink()
            raise
        partial.replace(target)
        manifest[ecosystem] = {
            "date": archive_date(headers, dt.datetime.now(dt.UTC)),
            "sha256": hashlib.sha256(body).hexdigest(),
            "url": url,
        }
        say("vuln-db", f"{ecosystem}: {len(body)} bytes, dated {manifest[ecosystem]['date']}")
    write_atomically(where / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: Sequence[str], env: Mapping[str, str]) -> int:
    try:
        if not argv:
            raise UsageError(f"usage: scripts/dev vuln-db DIR [{' '.join(KNOWN)}]")
        ecosystems = list(argv[1:]) or default_ecosystems(env.get("BASE_IMAGE") or DEFAULT_BASE_IMAGE)
        download(Path(argv[0]), ecosystems)
    except PipelineError as err:
        error(str(err))
        return err.exit_code
    return 0


if __name__ == "__main__":
    import os

    sys.exit(main(sys.argv[1:], os.environ))
