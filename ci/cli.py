"""The pipeline's command line: parse, choose the engine, run the stages, report, exit.

Exit codes (ci.core.errors): 0 passed or nothing to do, 1 a stage or gate failed or refused,
2 the command cannot start, 3 a bug in the pipeline (traceback after the reports), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

import anyio

from ci.core import errors
from ci.core.config import REPO_ROOT, VULN_LEVELS, build_config
from ci.core.errors import PipelineError, UsageError
from ci.core.log import error, say
from ci.core.platforms import SUPPORTED, default_platforms, host_platform, parse_platforms
from ci.core.report import Report, to_text, write_reports
from ci.engines.select import ENGINES, choose_engine
from ci.pipeline import PUBLISHING, execute
from ci.release import refresh
from ci.release.plan import HISTORY, read_history

COMMANDS = {
    "base": "build the base target (distribution dar, par2, python3)",
    "final": "build base, then the final image with dar-backup and its labels",
    "test": "build, then run FULL → DIFF → INCR end to end and prove every restore",
    "release": "gate, build, test, then publish the tested image by digest to --repo",
    "refresh": "build and test as a release would; release the next patch only if the base or packages changed",
}


# Ctrl-C, and what `dagger run` sends its command on Ctrl-C (cmd/dagger/exec_unix.go).
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors, as one line with the pipeline's exit code for bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = _Parser(
        prog="python ci/main.py",
        description="Build, test and release the dar-backup image on Dagger or the local Docker engine.",
        epilog="Each option can also come from the environment variable named in brackets; the flag wins. "
        "Exit codes: 0 passed or nothing to do, 1 a stage or gate failed, 2 bad input, 3 a bug, 130 interrupted.",
    )
    p.add_argument("command", choices=COMMANDS, help="; ".join(f"{k}: {v}" for k, v in COMMANDS.items()))
    p.add_argument(
        "--engine",
        default=env.get("DAR_BACKUP_CI_ENGINE", "auto"),
        help=f"{', '.join(ENGINES)}; auto: Dagger inside `dagger run`, else local Docker [DAR_BACKUP_CI_ENGINE]",
    )
    p.add_argument(
        "--image-version",
        default=env.get("DAR_BACKUP_IMAGE_VERSION"),
        help="semver of the image, e.g. 1.2.3 (default 0.0.0-dev; a release on GitHub for tag vX.Y.Z: X.Y.Z) "
        "[DAR_BACKUP_IMAGE_VERSION]",
    )
    p.add_argument(
        "--dar-backup-version",
        default=env.get("DAR_BACKUP_VERSION"),
        help="dar-backup release to install; must equal docker/requirements.txt [DAR_BACKUP_VERSION]",
    )
    p.add_argument(
        "--base-image", default=env.get("BASE_IMAGE"), help="image to build FROM (default ubuntu:24.04) [BASE_IMAGE]"
    )
    p.add_argument(
        "--tools-base-image",
        default=env.get("DAR_BACKUP_TOOLS_BASE_IMAGE"),
        help="image the release's cosign tools image builds FROM (default debian:trixie-slim) "
        "[DAR_BACKUP_TOOLS_BASE_IMAGE]",
    )
    p.add_argument(
        "--repo", default=env.get("DAR_BACKUP_REPO"), help="REGISTRY/NAME the image is released to [DAR_BACKUP_REPO]"
    )
    p.add_argument(
        "--platform",
        default=env.get("DAR_BACKUP_PLATFORMS"),
        help=f"comma list of {', '.join(SUPPORTED)}; default: this machine's for base, final and test, "
        "both for release and refresh [DAR_BACKUP_PLATFORMS]",
    )
    p.add_argument(
        "--previous-image",
        default=env.get("DAR_BACKUP_PREVIOUS_IMAGE"),
        help="test: a released image (registry ref) whose archives the candidate must restore "
        "(release and refresh use the last release) [DAR_BACKUP_PREVIOUS_IMAGE]",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="release, refresh: gate, build and test, but push and sign nothing and write no history",
    )
    p.add_argument(
        "--vuln-db",
        default=env.get("DAR_BACKUP_VULN_DB"),
        help="the OSV vulnerability database, DIR/<Ecosystem>/all.zip as the OSV bucket serves it (scripts/dev "
        "vuln-db DIR downloads it); release and refresh refuse without one, test scans and reports with one "
        "[DAR_BACKUP_VULN_DB]",
    )
    p.add_argument(
        "--vuln-threshold",
        default=env.get("DAR_BACKUP_VULN_THRESHOLD", "high"),
        help=f"{', '.join(VULN_LEVELS)}: a fixable finding at or above it refuses a release (default high; a record "
        "without a severity counts as high) [DAR_BACKUP_VULN_THRESHOLD]",
    )
    p.add_argument(
        "--report-dir",
        type=Path,
        default=Path(env.get("DAR_BACKUP_REPORT_DIR", "reports")),
        help="where the JSON and JUnit reports go (default reports/) [DAR_BACKUP_REPORT_DIR]",
    )
    return p


def chosen_platforms(requested: str | None, publishing: bool) -> tuple[str, ...]:
    if requested is None:
        return default_platforms(publishing, host_platform())
    return parse_platforms(requested)


def writable_report_dir(path: Path) -> None:
    """Refuse an unusable --report-dir before the run, not after it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot use {path} as --report-dir: {err.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"cannot use {path} as --report-dir: not writable")


def tag_version(env: Mapping[str, str]) -> str | None:
    """What a GitHub run for git tag vX.Y.Z releases: X.Y.Z (image tags are bare semver)."""
    name = env.get("GITHUB_REF_NAME", "")
    return name[1:] if env.get("GITHUB_REF_TYPE") == "tag" and name.startswith("v") else None


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        args = parser(env).parse_args(argv)
        engine_name, why = choose_engine(args.engine, env)
        image_version = args.image_version
        if args.command == "release" and image_version is None:
            image_version = tag_version(env)
        if args.command == "refresh":
            if image_version is not None:
                raise UsageError("refresh picks its version itself (the next patch after the last release)")
            next_patch = refresh.next_patch(read_history(REPO_ROOT / HISTORY))
            if next_patch is None:
                say("refresh", "nothing to refresh: no release yet")
                return 0
            image_version = str(next_patch)
        config = build_config(
            image_version=image_version,
            dar_backup_version=args.dar_backup_version,
            base_image=args.base_image,
            tools_base_image=args.tools_base_image,
            repo=args.repo,
            dry_run=args.dry_run,
            report_dir=args.report_dir,
            env=env,
            root=REPO_ROOT,
            previous_image=args.previous_image,
            platforms=chosen_platforms(args.platform, args.command in PUBLISHING),
            vuln_db=args.vuln_db,
            vuln_threshold=args.vuln_threshold,
        )
        if args.previous_image and args.command != "test":
            raise UsageError("--previous-image applies to test; release and refresh check against the last release")
        if args.command in PUBLISHING and config.vuln_db is None:
            raise UsageError(
                f"{args.command} scans each image before publishing: give --vuln-db DIR (or DAR_BACKUP_VULN_DB); "
                "scripts/dev vuln-db DIR downloads it"
            )
        if args.dry_run and args.command not in PUBLISHING:
            raise UsageError(f"--dry-run applies to release and refresh only, not {args.command}")
        writable_report_dir(config.report_dir)
    except PipelineError as err:
        error(str(err))
        return err.exit_code
    say("pipeline", f"{args.command} on {engine_name} ({why}); run {config.run_id}")
    report = Report(
        args.command,
        engine_name,
        run={
            "run_id": config.run_id,
            "image_version": config.image_version,
            "dar_backup_version": config.dar_backup_version,
            "revision": config.revision,
            "created": config.created,
            "platforms": {platform: {} for platform in config.platforms},
        },
    )
    return run_reported(
        report,
        config.report_dir,
        env.get("GITHUB_STEP_SUMMARY"),
        functools.partial(execute, engine_name, config, report, args.command, env),
    )


def run_reported(
    report: Report, report_dir: Path, step_summary: str | None, work: Callable[[], Awaitable[None]]
) -> int:
    """Run the work, then always write the reports and end with one `error:` line when it failed.

    A PipelineError ends with its own exit code; Ctrl-C is 130; anything else is a bug in the
    pipeline (exit 3), and only then is a traceback shown, after the reports are written.
    """
    code, bug = 0, ""
    interrupts: list[int] = []

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        # Ctrl-C also reaches the container in flight, whose exit may surface first as a failed step.
        interrupts.append(signum)
        signal.default_int_handler(signum, frame)

    # `dagger run` turns Ctrl-C into SIGTERM for its command (and SIGKILL 10 s later): the same
    # interruption, which must still end with the reports and exit 130.
    previous = {signum: signal.signal(signum, on_interrupt) for signum in INTERRUPTS}
    try:
        anyio.run(work)
        report.outcome = "passed"
    except PipelineError as err:
        report.outcome, report.error, code = "failed", str(err), err.exit_code
    except KeyboardInterrupt:
        pass
    except Exception as err:
        report.outcome, report.error, code = "failed", f"internal error: {type(err).__name__}: {err}", errors.BUG
        bug = traceback.format_exc()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if interrupts:
        report.outcome, report.error = "interrupted", "interrupted (Ctrl-C); volumes and containers removed"
        code = errors.INTERRUPTED
    write_reports(report, report_dir, step_summary)
    print(to_text(report), flush=True)
    if bug:
        print(bug, file=sys.stderr, end="")
    if code:
        detail = report.error.splitlines()
        if len(detail) > 1:
            print("\n".join(detail[1:]), file=sys.stderr)
        error(detail[0] if detail else report.outcome)
    return code
