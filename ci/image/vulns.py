"""The vulnerability scan of an image: osv-scanner, offline, over the image's own SBOM.

The scanner runs on the host, not in the image: it reads the CycloneDX SBOM that `sbom.py`
assembled from inside the image through the engine seam, so Docker and Dagger scan the same
inventory with the same binary. The database is a directory laid out as the OSV bucket serves
it (`DIR/<Ecosystem>/all.zip`); nothing is fetched and nothing is sent (`--offline`,
`--offline-vulnerabilities`, `--no-resolve`, a local DB path and no download flag).

Everything but running the scanner is plain functions over values: which archives the SBOM
needs, the exceptions file, reading the scanner's JSON, each finding's fixed version and
severity, the gate's decision and the attested predicate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import tempfile
import tomllib
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
from packageurl import PackageURL
from packaging.version import InvalidVersion, Version

from ci.core.config import VULN_LEVELS
from ci.core.errors import OutputError, StageFailure, UsageError

# The one home of the scanner's pin: scripts/dev installs this version, the scan refuses another.
SCANNER_MODULE = "github.com/google/osv-scanner/v2/cmd/osv-scanner"
SCANNER_VERSION = "2.6.0"
SCANNER_URI = f"pkg:golang/{SCANNER_MODULE.removesuffix('/cmd/osv-scanner')}@v{SCANNER_VERSION}"
DATABASE_URI = "https://osv-vulnerabilities.storage.googleapis.com"
# The exceptions: osv-scanner's own config format, so `osv-scanner --config` by hand agrees.
EXCEPTIONS_FILE = "osv-scanner.toml"
# What the download command writes beside the archives: each archive's date and digest.
MANIFEST = "osv-db.json"
LEVELS = VULN_LEVELS
# A record that names no severity the gate can read counts as this.
UNKNOWN_COUNTS_AS = "high"
# The purls the SBOM writes, and the OSV ecosystem (the archive's directory) of each.
ECOSYSTEMS = {("deb", "debian"): "Debian", ("deb", "ubuntu"): "Ubuntu", ("pypi", None): "PyPI"}
TEXT_LEVELS = {
    "critical": "critical",
    "high": "high",
    "important": "high",
    "moderate": "medium",
    "medium": "medium",
    "low": "low",
    "negligible": "low",
    "unimportant": "low",
}


@dataclass(frozen=True)
class Waiver:
    """One `[[IgnoredVulns]]` entry: the record id, until when, and why."""

    id: str
    until: dt.date
    reason: str


@dataclass(frozen=True)
class Finding:
    id: str
    package: str
    ecosystem: str
    installed: str
    # The lowest fixed version above the installed one; None when no fix is known.
    fixed: str | None
    severity: str

    @property
    def line(self) -> str:
        return f"{self.id} {self.package} {self.installed} fixed in {self.fixed or 'no release'} ({self.severity})"


@dataclass(frozen=True)
class Archive:
    ecosystem: str
    sha256: str
    # The archive's date: as the download recorded it (the bucket's Last-Modified), else its mtime.
    date: str


@dataclass(frozen=True)
class Scan:
    """What one scan of one SBOM found, and with what."""

    platform: str
    packages: int
    findings: tuple[Finding, ...]
    waived: tuple[Waiver, ...]
    stale: tuple[Waiver, ...]
    archives: tuple[Archive, ...]
    argv: tuple[str, ...]
    started: str
    finished: str

    def refused(self, threshold: str) -> list[Finding]:
        return refused(self.findings, threshold)


def rank(level: str) -> int:
    return LEVELS.index(UNKNOWN_COUNTS_AS if level == "unknown" else level)


def ecosystem_of(purl: str) -> str:
    """The OSV ecosystem a component's purl is looked up in; any other purl type refuses the scan."""
    parsed = PackageURL.from_string(purl)
    found = ECOSYSTEMS.get((parsed.type, parsed.namespace))
    if found is None:
        raise StageFailure(f"no OSV ecosystem for the SBOM component {purl}: the scan would miss it")
    return found


def needed_ecosystems(document: Mapping[str, Any]) -> dict[str, int]:
    """Ecosystem → how many SBOM components are looked up in it: every component has a purl.

    The image itself (`metadata.component`, a pkg:oci purl) is the scan's subject, not a package.
    """
    counts: dict[str, int] = {}
    for component in document.get("components", []):
        if not component.get("purl"):
            raise StageFailure(f"the SBOM component {component.get('name')!r} has no purl: the scan would miss it")
        ecosystem = ecosystem_of(str(component["purl"]))
        counts[ecosystem] = counts.get(ecosystem, 0) + 1
    if not counts:
        raise StageFailure("the SBOM lists no packages to scan")
    return counts


def read_manifest(db: Path) -> dict[str, Any]:
    path = db / MANIFEST
    if not path.exists():
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StageFailure(f"vulnerability database: {path} is unreadable: {err}") from None
    return found if isinstance(found, dict) else {}


def check_archives(db: Path, needed: Iterable[str]) -> tuple[Archive, ...]:
    """Each archive the SBOM needs is there and reads as a whole zip; refuses otherwise (fail closed)."""
    manifest = read_manifest(db)
    archives = []
    for ecosystem in sorted(needed):
        path = db / ecosystem / "all.zip"
        if not path.is_file():
            raise StageFailure(f"vulnerability database: no {path} for the image's {ecosystem} packages")
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            data = path.read_bytes()
        except (OSError, zipfile.BadZipFile, zlib.error) as err:
            raise StageFailure(f"vulnerability database: {path} is unreadable: {err}") from None
        if bad is not None:
            raise StageFailure(f"vulnerability database: {path} is corrupt at {bad}")
        recorded = manifest.get(ecosystem, {})
        mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        date = str(recorded.get("date") or mtime)
        archives.append(Archive(ecosystem, hashlib.sha256(data).hexdigest(), date))
    return tuple(archives)


def parse_waivers(text: str, where: str) -> tuple[Waiver, ...]:
    """The `[[IgnoredVulns]]` of osv-scanner's config; each needs an id, an ignoreUntil date and a reason."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{where}: {err}") from None
    entries = document.get("IgnoredVulns", [])
    waivers = []
    for index, entry in enumerate(entries if isinstance(entries, list) else [None]):
        label = f"{where}: IgnoredVulns[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"id", "ignoreUntil", "reason"}:
            raise UsageError(f"{label} must have exactly id, ignoreUntil and reason")
        until, reason, ident = entry["ignoreUntil"], entry["reason"], entry["id"]
        if isinstance(until, dt.datetime):
            until = until.date()
        if not isinstance(until, dt.date) or not isinstance(ident, str) or not ident:
            raise UsageError(f"{label}: id must be a record id and ignoreUntil a date")
        if not isinstance(reason, str) or not reason.strip():
            raise UsageError(f"{label} ({ident}) gives no reason")
        waivers.append(Waiver(ident, until, reason.strip()))
    ids = [w.id for w in waivers]
    if len(set(ids)) != len(ids):
        raise UsageError(f"{where}: an id is listed twice")
    return tuple(waivers)


def expired(waivers: Iterable[Waiver], today: dt.date) -> list[str]:
    """One line per exception whose ignoreUntil has come: osv-scanner ignores only before that
    date's midnight (UTC), so on the day itself the exception no longer holds."""
    return [
        f"the exception for {w.id} expired on {w.until.isoformat()} ({w.reason})" for w in waivers if w.until <= today
    ]


def read_waivers(path: Path, today: dt.date) -> tuple[Waiver, ...]:
    """The exceptions file; a malformed one cannot start a run, an expired entry refuses it."""
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read {path}: {err}") from None
    waivers = parse_waivers(text, path.name)
    lapsed = expired(waivers, today)
    if lapsed:
        raise StageFailure(f"{path.name}: " + "; ".join(lapsed) + ": fix it, or renew it with a reason")
    return waivers


def debian_compare(a: str, b: str) -> int:
    """dpkg's version order (epoch, upstream, revision; `~` before everything): -1, 0 or 1."""

    def split(version: str) -> tuple[int, str, str]:
        epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
        return int(epoch or 0), upstream, revision

    def order(char: str) -> int:
        return -1 if char == "~" else ord(char) if char.isalpha() else ord(char) + 256

    def part(x: str, y: str) -> int:
        while x or y:
            xs, ys = re.match(r"\D*", x).group(), re.match(r"\D*", y).group()  # type: ignore[union-attr]
            for i in range(max(len(xs), len(ys))):
                cx = order(xs[i]) if i < len(xs) else 0
                cy = order(ys[i]) if i < len(ys) else 0
                if cx != cy:
                    return -1 if cx < cy else 1
            x, y = x[len(xs) :], y[len(ys) :]
            xd, yd = re.match(r"\d*", x).group(), re.match(r"\d*", y).group()  # type: ignore[union-attr]
            if int(xd or 0) != int(yd or 0):
                return -1 if int(xd or 0) < int(yd or 0) else 1
            x, y = x[len(xd) :], y[len(yd) :]
        return 0

    (ea, ua, ra), (eb, ub, rb) = split(a), split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return part(ua, ub) or part(ra, rb)


def above(ecosystem: str, fixed: str, installed: str) -> bool:
    """Whether `fixed` is a later version than `installed`, in the ecosystem's own order."""
    if ecosystem == "PyPI":
        try:
            return Version(fixed) > Version(installed)
        except InvalidVersion:
            return fixed != installed
    return debian_compare(fixed, installed) > 0


def fixed_version(record: Mapping[str, Any], package: str, ecosystem: str, installed: str) -> str | None:
    """The lowest version a range of the record fixes the package in that is above the installed one."""
    found: list[str] = []
    for affected in record.get("affected", []):
        named = affected.get("package", {})
        if named.get("name") != package or str(named.get("ecosystem", "")).split(":")[0] != ecosystem:
            continue
        for span in affected.get("ranges", []):
            for event in span.get("events", []):
                if "fixed" in event and above(ecosystem, str(event["fixed"]), installed):
                    found.append(str(event["fixed"]))
    lowest: str | None = None
    for version in found:
        if lowest is None or above(ecosystem, lowest, version):
            lowest = version
    return lowest


def cvss_level(score: float) -> str | None:
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low" if score > 0 else None


def severity(record: Mapping[str, Any], max_severity: str) -> str:
    """The highest level the record or the scanner names: a textual level (the record's
    database_specific.severity, an Ubuntu priority, an affected entry's ecosystem_specific
    severity) or the CVSS base score the scanner computed from the record's vectors
    (`max_severity`); `unknown` when none reads."""
    texts = [record.get("database_specific", {}).get("severity")]
    texts += [
        entry.get("score") for entry in record.get("severity", []) if not str(entry.get("type")).startswith("CVSS")
    ]
    texts += [a.get("ecosystem_specific", {}).get("severity") for a in record.get("affected", [])]
    levels = [TEXT_LEVELS[t.lower()] for t in texts if isinstance(t, str) and t.lower() in TEXT_LEVELS]
    try:
        scored = cvss_level(float(max_severity)) if max_severity else None
    except ValueError:
        scored = None
    levels += [scored] if scored else []
    return max(levels, key=LEVELS.index) if levels else "unknown"


def parse_results(text: str) -> tuple[int, tuple[Finding, ...]]:
    """How many packages the scanner looked up, and one finding per (record, package)."""
    try:
        document = json.loads(text)
        sources = document["results"]
        packages = [entry for source in sources for entry in source["packages"]]
    except (ValueError, KeyError, TypeError) as err:
        raise OutputError(f"osv-scanner printed an unreadable result: {err}") from None
    findings = []
    for entry in packages:
        named = entry.get("package", {})
        name, version = str(named.get("name", "")), str(named.get("version", ""))
        ecosystem = str(named.get("ecosystem", "")).split(":")[0]
        scores = {i: g.get("max_severity", "") for g in entry.get("groups") or [] for i in g.get("ids", [])}
        for record in entry.get("vulnerabilities") or []:
            ident = str(record.get("id", ""))
            fixed = fixed_version(record, name, ecosystem, version)
            findings.append(Finding(ident, name, ecosystem, version, fixed, severity(record, scores.get(ident, ""))))
    return len(packages), tuple(sorted(findings, key=lambda f: (-rank(f.severity), f.id, f.package)))


def unused_ids(stderr: str) -> set[str]:
    """The ids osv-scanner says the config ignored nothing with (`… has unused ignores:`, then ` - ID`)."""
    ids: set[str] = set()
    listing = False
    for line in stderr.splitlines():
        if line.endswith("has unused ignores:"):
            listing = True
        elif listing and line.startswith(" - "):
            ids.add(line[3:].strip())
        else:
            listing = False
    return ids


def refused(findings: Iterable[Finding], threshold: str) -> list[Finding]:
    """What the gate refuses: fixable, at or above the threshold (an unknown severity counts as high)."""
    return [f for f in findings if f.fixed is not None and rank(f.severity) >= LEVELS.index(threshold)]


def check_run(exit_code: int, stderr: str) -> None:
    """0: nothing found, 1: findings; anything else, or a database it could not load, is the scanner failing."""
    tail = " | ".join(stderr.strip().splitlines()[-2:])
    if exit_code not in (0, 1):
        raise StageFailure(f"osv-scanner exited {exit_code}: {tail}")
    if "could not load db" in stderr or "unable to fetch OSV database" in stderr:
        raise StageFailure(f"osv-scanner could not load the vulnerability database: {tail}")


def scanner_argv(binary: str, sbom: Path, db: Path, config: Path) -> list[str]:
    """The scan, offline: `sbom` named `*.cdx.json`, which the scanner reads as CycloneDX by its name."""
    return [
        binary, "scan", "source", "--offline", "--offline-vulnerabilities", "--no-resolve",
        "--local-db-path", str(db), "--config", str(config),
        "--format", "json", "--all-packages", "--all-vulns", "-L", str(sbom),
    ]  # fmt: skip


def scanner_version(text: str) -> str | None:
    found = re.search(r"osv-scanner version: v?(\S+)", text)
    return found.group(1) if found else None


def predicate(scan: Scan, threshold: str) -> dict[str, Any]:
    """cosign's vulnerability predicate (https://cosign.sigstore.dev/attestation/vuln/v1), with
    every field its `--type vuln` structure prints, so cosign signs what this writes."""
    return {
        "invocation": {"parameters": list(scan.argv[1:]), "uri": "", "event_id": "", "builder.id": ""},
        "scanner": {
            "uri": SCANNER_URI,
            "version": SCANNER_VERSION,
            "db": {
                "uri": DATABASE_URI,
                "version": ", ".join(f"{a.ecosystem} {a.date} sha256:{a.sha256}" for a in scan.archives),
            },
            "result": {
                "platform": scan.platform,
                "threshold": threshold,
                "packages": scan.packages,
                "findings": [asdict(f) for f in scan.findings],
                "refused": [f.id for f in scan.refused(threshold)],
                "exceptions": [waiver_values(w) for w in scan.waived],
                "stale_exceptions": [waiver_values(w) for w in scan.stale],
            },
        },
        "metadata": {"scanStartedOn": scan.started, "scanFinishedOn": scan.finished},
    }


def waiver_values(waiver: Waiver) -> dict[str, str]:
    return {"id": waiver.id, "until": waiver.until.isoformat(), "reason": waiver.reason}


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def predicate_counts(document: Mapping[str, Any]) -> dict[str, int]:
    """The counts of an attested scan: packages looked up, findings, fixable ones, exceptions applied."""
    result = document["scanner"]["result"]
    return {
        "packages": int(result["packages"]),
        "findings": len(result["findings"]),
        "fixable": sum(f["fixed"] is not None for f in result["findings"]),
        "exceptions": len(result["exceptions"]),
    }


def summary(scan: Scan, threshold: str) -> list[str]:
    """The report's lines: the counts, then each finding, exception and stale exception."""
    head = (
        f"{scan.platform} vulnerability scan: {scan.packages} packages, {len(scan.findings)} findings, "
        f"{len(scan.refused(threshold))} fixable at or above {threshold}, {len(scan.waived)} exceptions "
        f"(osv-scanner {SCANNER_VERSION}; {', '.join(f'{a.ecosystem} {a.date}' for a in scan.archives)})"
    )
    lines = [head, *(f"{scan.platform} finding: {f.line}" for f in scan.findings)]
    lines += [f"{scan.platform} exception: {w.id} until {w.until.isoformat()}: {w.reason}" for w in scan.waived]
    lines += [f"{scan.platform} stale exception (matches nothing): {w.id}" for w in scan.stale]
    return lines


def find_scanner() -> str:
    binary = shutil.which("osv-scanner")
    if binary is None:
        raise StageFailure(f"osv-scanner is not installed: scripts/dev installs v{SCANNER_VERSION}")
    return binary


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def scan_sbom(sbom_text: str, platform: str, db: Path, exceptions: Path, today: dt.date | None = None) -> Scan:
    """Scan one SBOM with the scanner on the host, offline; refuses whenever it cannot vouch for the result."""
    document = json.loads(sbom_text)
    needed = needed_ecosystems(document)
    archives = check_archives(db, needed)
    waivers = read_waivers(exceptions, today or dt.datetime.now(dt.UTC).date())
    binary = find_scanner()
    said = await anyio.run_process([binary, "--version"], check=False)
    version = scanner_version(said.stdout.decode(errors="replace"))
    if version != SCANNER_VERSION:
        raise StageFailure(f"{binary} is osv-scanner {version}, the pipeline pins {SCANNER_VERSION}: run scripts/dev")
    with tempfile.TemporaryDirectory(prefix="dar-backup-ci-osv-") as tmp:
        work = Path(tmp)
        # The scanner's local database is `<path>/osv-scalibr/<Ecosystem>/all.zip`: links to
        # the given archives, so it reads them where they are and can write nothing beside them.
        for archive in archives:
            (work / "db/osv-scalibr" / archive.ecosystem).mkdir(parents=True)
            (work / "db/osv-scalibr" / archive.ecosystem / "all.zip").symlink_to(
                (db / archive.ecosystem / "all.zip").resolve()
            )
        sbom_path = work / "image.cdx.json"
        sbom_path.write_text(sbom_text, encoding="utf-8")
        config = work / EXCEPTIONS_FILE
        config.write_text(exceptions.read_text(encoding="utf-8") if exceptions.exists() else "", encoding="utf-8")
        argv = scanner_argv(binary, sbom_path, work / "db", config)
        started = utc_now()
        done = await anyio.run_process(argv, check=False, cwd=work)
        finished = utc_now()
    stdout, stderr = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    check_run(done.returncode, stderr)
    packages, findings = parse_results(stdout)
    wanted = sum(needed.values())
    if packages != wanted:
        raise StageFailure(f"osv-scanner looked up {packages} packages, the SBOM lists {wanted}: the scan missed some")
    unused = unused_ids(stderr)
    unknown = unused - {w.id for w in waivers}
    if unknown:
        raise OutputError(f"osv-scanner reports unused exceptions the file does not list: {sorted(unknown)}")
    waived = tuple(w for w in waivers if w.id not in unused)
    stale = tuple(w for w in waivers if w.id in unused)
    return Scan(platform, packages, findings, waived, stale, archives, tuple(argv), started, finished)


def refusal(scans: Sequence[Scan], threshold: str) -> str | None:
    """The gate's one error: each refused finding on its own line, the first line counting them."""
    lines = [f"{s.platform}: {f.line}" for s in scans for f in s.refused(threshold)]
    if not lines:
        return None
    return f"vulnerability gate: {len(lines)} fixable at or above {threshold}\n" + "\n".join(lines)
