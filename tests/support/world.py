"""Scripted answers for the Dagger contract tests: what the image's commands would print.

Enough of a world for the real test stage to pass: one small data tree whose manifest every
snapshot and restore prints, archives that appear as levels run, a slice that really changes
when `dd` corrupts it and comes back when `par2 repair` runs.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ci.engines import batch
from ci.engines.dagger import LOOPBACK_ALIAS, RELAY
from ci.image.sbom import VENV_PYTHON
from ci.release.signing import PROVENANCE, SBOM
from ci.stages.manifest import HASHES_MARKER, XATTRS_MARKER
from ci.stages.scenario import (
    ACL_REFUSAL,
    BEYOND_REPAIR,
    CORRUPT_SOURCE,
    DEFINITION,
    ENTRYPOINT,
    LEVELS,
    TIME_ZONE,
    local_date,
)
from tests.support.recording import DAGGER_VERSION, Chain, calls
from tests.support.samples import DAR_V_BOOKWORM, DISTS, DPKG, OS_RELEASE

FILES = {"docs/a.txt": "a" * 64, "with space.txt": "b" * 64}
ENTRIES = (
    ("d", "docs", "755", "100.0", "1", "", "1000", "1000", "4096", "8"),
    ("f", "docs/a.txt", "664", "100.0", "2", "", "1000", "1000", "64", "8"),
    ("f", "with space.txt", "600", "101.123456789", "3", "", "1000", "1000", "67108864", "2048"),
    ("l", "link", "777", "102.0", "4", "docs/a.txt", "1000", "1000", "10", "0"),
    ("p", "fifo", "640", "103.0", "5", "", "1000", "1000", "0", "0"),
)
XATTRS = (
    ("docs", "system.posix_acl_default", "user::rwx,user:1001:rwx,group::r-x,mask::rwx,other::r-x"),
    ("docs/a.txt", "system.posix_acl_access", "user::rw-,user:1001:r--,group::r--,group:1002:rw-,mask::rw-,other::r--"),
    ("docs/a.txt", "user.binary", "9" * 64),
)
MANIFEST = (
    "".join("\x00".join(entry) + "\x00" for entry in ENTRIES)
    + f"{HASHES_MARKER}\x00"
    + "".join(f"{digest}  ./{path}\x00" for path, digest in FILES.items())
    + f"{XATTRS_MARKER}\x00"
    + "".join("\x00".join(record) + "\x00" for record in XATTRS)
)
VERSIONS = {
    "dar": " dar version 2.7.8, Copyright (C) 2002-2022 Denis Corbin\n",
    "par2": "par2cmdline version 0.8.1\n",
    "dar-backup": "dar-backup 1.1.11\ndar-backup source code is here\n",
}
PUBLISHED_DIGEST = "sha256:" + "c" * 64
ENGINE_VERSION = f"v{DAGGER_VERSION}"
# What cosign's --type names (a known kind, or the predicate type URI itself).
PREDICATE_TYPES = {SBOM.kind: SBOM.predicate_type, PROVENANCE.kind: PROVENANCE.predicate_type}
PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"


def batch_commands(argv: list[str]) -> list[list[str]] | None:
    """The commands of a batch's argv (`bash -c SCRIPT batch BOUNDARY COUNT ARG…`), None for another argv."""
    if argv[:3] != ["bash", "-c", batch.SCRIPT]:
        return None
    commands, rest = [], argv[5:]
    while rest:
        count = int(rest[0])
        commands.append(rest[1 : count + 1])
        rest = rest[count + 1 :]
    return commands


def platform_of(chain: Chain) -> str:
    """The platform the exec's container was built (or pulled) for."""
    built_for = [a.get("platform") for a in calls(chain, "dockerBuild") + calls(chain, "container")]
    return next((p for p in built_for if p), "linux/amd64")


@dataclass
class Backups:
    """What a platform's stories keep in /backups: the stories run at once are one per platform,
    each on volumes of its own (one after the other, a story's -F starts from undamaged archives)."""

    done_levels: list[str] = field(default_factory=list)
    corrupted: bool = False
    # Damage past par2's redundancy: repair fails and a restore brings back different bytes.
    beyond_repair: bool = False


@dataclass
class World:
    exit_codes: dict[str, int] = field(default_factory=dict)
    # A par2 that exits 0 without repairing: "always", or only "beyond" its redundancy.
    par2_lies: str = ""
    # A batch's container dies when it reaches this command (`dar -t`, `par2`): the rest never run.
    batch_dies_at: str = ""
    # What dar does with such a slice: restores different bytes (False: a restore that looks whole).
    damaged_restore_differs: bool = True
    results: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    manifest: str = MANIFEST
    distributions: str = DISTS
    dar_v: str = DAR_V_BOOKWORM
    # (digest, predicateType) → the predicate files cosign attest read.
    attested: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    published: list[tuple[Chain, dict[str, Any]]] = field(default_factory=list)
    # Each platform's /backups.
    volumes: dict[str, Backups] = field(default_factory=dict)

    @property
    def done_levels(self) -> list[str]:
        """The levels backed up, in order, on every platform."""
        return [level for backups in self.volumes.values() for level in backups.done_levels]

    def backups(self, chain: Chain) -> Backups:
        return self.volumes.setdefault(platform_of(chain), Backups())

    def answer(self, chain: Chain, name: str, args: dict[str, Any]) -> Any:
        if name == "label":
            values = [a["value"] for a in calls(chain, "withLabel") if a["name"] == args["name"]]
            return values[-1] if values else None
        if name == "version":
            return ENGINE_VERSION
        if name == "publish":
            self.published.append((chain, args))
            return f"{args['address']}@{PUBLISHED_DIGEST}"
        argv = calls(chain, "withExec")[-1]["args"]
        if argv[:3] == ["sh", "-c", RELAY.format(alias=LOOPBACK_ALIAS)]:
            argv = argv[6:]  # the relay's shell execs its command: sh -c RELAY sh HOST PORT COMMAND…
        # exitCode, stdout and stderr are three queries on one exec: it runs once, as in Dagger.
        if repr(chain) not in self.results:
            files = {f["path"]: f["contents"] for f in calls(chain, "withNewFile")}
            self.results[repr(chain)] = (
                self.alone(argv, self.cosign(argv[1:], files)) if argv[0] == "cosign" else self.run(argv, chain)
            )
        code, stdout, stderr = self.results[repr(chain)]
        return {"exitCode": code, "stdout": stdout, "stderr": stderr}[name]

    @staticmethod
    def alone(argv: list[str], answer: tuple[int, str]) -> tuple[int, str, str]:
        code, stdout = answer
        return code, stdout, "" if code == 0 else f"{argv[0]} failed\n"

    def run(self, argv: list[str], chain: Chain) -> tuple[int, str, str]:
        """One command, or each of a batch's in turn as its bash script runs them."""
        commands = batch_commands(argv)
        if commands is None:
            return self.alone(argv, self.execute(argv, chain))
        boundary, out, err = argv[4], "", ""
        for index, command in enumerate(commands):
            if self.batch_dies_at in (" ".join(command[:2]), command[0]):
                return 137, out, err + "Killed\n"
            code, stdout, stderr = self.alone(command, self.execute(command, chain))
            out += f"{stdout}\n{boundary} {index} {code}\n"
            err += f"{stderr}\n{boundary} {index} {code}\n"
        return 0, out, err

    def cosign(self, args: list[str], files: dict[str, str]) -> tuple[int, str]:
        """cosign as it answers a key pair that signed: what was attested comes back verified."""
        digest = args[-1].rpartition("@")[2]
        if args[0] == "public-key":
            return 0, PUBLIC_KEY
        kind = args[args.index("--type") + 1] if "--type" in args else ""
        if args[0] == "attest":
            predicate_type = PREDICATE_TYPES.get(kind, kind)
            self.attested.setdefault((digest, predicate_type), []).append(files[args[args.index("--predicate") + 1]])
        if args[0] == "verify":
            return 0, json.dumps([{"critical": {"image": {"docker-manifest-digest": digest}}}])
        if args[0] == "verify-attestation":
            predicate_type = PREDICATE_TYPES[kind]
            lines = []
            for text in self.attested.get((digest, predicate_type), []):
                statement = {
                    "predicateType": predicate_type,
                    "subject": [{"digest": {"sha256": digest.removeprefix("sha256:")}}],
                    "predicate": json.loads(text),
                }
                lines.append(json.dumps({"payload": base64.b64encode(json.dumps(statement).encode()).decode()}))
            return 0, "".join(line + "\n" for line in lines)
        return 0, ""

    def archive(self, level: str) -> str:
        return f"{DEFINITION}_{level}_{local_date(TIME_ZONE, dt.datetime.now(dt.UTC))}"

    def execute(self, argv: list[str], chain: Chain) -> tuple[int, str]:
        if argv[0] == ENTRYPOINT:  # inside a batch, as the image's entrypoint runs it
            argv = argv[1:]
        held = self.backups(chain)
        for key in (" ".join(argv[:2]), argv[0]):
            if key in self.exit_codes:
                return self.exit_codes[key], ""
        command = argv[0]
        if argv == ["dar", "-V"]:
            return 0, self.dar_v
        if argv[-1:] == ["--version"]:
            return 0, VERSIONS[command]
        if command == "-r" and "--overwrite-restore-target" in argv:
            # dar-backup 1.1.11 over the data set's directory with a default ACL: refused unless root forces it.
            as_root = {"name": "RUN_AS_UID", "value": "0"} in calls(chain, "withEnvVariable")
            if "--force-unsafe-restore-target" not in argv or not as_root:
                return 1, f"directory '/scratch/x/data/meta/acl-dir' {ACL_REFUSAL}.\n"
        if command in ("-F", "-D", "-I"):
            if command == "-F":  # a new story (the upgrade check's) starts from undamaged archives
                held.corrupted = held.beyond_repair = False
            held.done_levels.append(next(level.name for level in LEVELS if level.flag == command))
            return 0, "backup done\n"
        if command == "sh" and "find" in argv[2]:
            if (
                self.damaged_restore_differs
                and held.beyond_repair
                and argv[-1].startswith("/scratch/restore-unrecoverable")
            ):
                return 0, self.manifest.replace("a" * 64, "f" * 64)
            return 0, self.manifest
        if command == "ls":
            return 0, "".join(f"{self.archive(lv)}.1.dar\n{self.archive(lv)}.1.dar.par2\n" for lv in held.done_levels)
        if argv[:2] == ["manager", "--list-catalogs"]:
            return 0, "".join(f"{self.archive(lv)}\n" for lv in held.done_levels)
        if command == "--list":
            return 0, "".join(f"{self.archive(lv)} : 1 MB\n" for lv in held.done_levels)
        if command == "--list-contents":
            if argv[1].startswith(f"{DEFINITION}_FULL_"):
                return 0, "".join(
                    f"[Saved][ ] [-L-] -rw-r--r-- u g 1 o date\tdata/{p}\n" for p in [*FILES, "link", "fifo"]
                )
            return 0, ""
        if argv[:2] == ["cat", "/etc/os-release"]:
            return 0, OS_RELEASE
        if command == "dpkg-query":
            # The packages of the platform the container was built (or pulled) for.
            return 0, DPKG.replace("\tamd64\n", f"\t{platform_of(chain).split('/')[1]}\n")
        if command == VENV_PYTHON:
            return 0, self.distributions
        if command == "date":
            return 0, dt.datetime.now(ZoneInfo(TIME_ZONE)).strftime("%Y-%m-%d %H:%M:%S\n")
        if command == "sha256sum":
            return 0, ("d" if held.corrupted else "e") * 64 + f"  {argv[1]}\n"
        if argv[:3] == ["python3", "-c", CORRUPT_SOURCE]:
            held.corrupted = True
            held.beyond_repair = tuple(argv[4:]) == BEYOND_REPAIR.spans
        if command == "par2":
            if self.par2_lies == "always" or (self.par2_lies == "beyond" and held.beyond_repair):
                return 0, ""
            if held.beyond_repair:
                return 2, ""
            held.corrupted = False
        if command == "dar" and argv[1] == "-t":
            return (5 if held.corrupted else 0), ""
        return 0, ""
