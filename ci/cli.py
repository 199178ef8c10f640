"""The pipeline's command line: parse, choose the engine, run the stages, report, exit."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

import anyio
import semver

from ci import stages, upgrade
from ci.config import REPO_ROOT, ConfigError, RunConfig, build_config
from ci.engines.seam import Engine, EngineError
from ci.engines.select import ENGINES, choose_engine, open_engine
from ci.platforms import SUPPORTED, PlatformError, default_platforms, host_platform, parse_platforms
from ci.release import history, refresh
from ci.release.stage import HISTORY, Plan, preflight, release
from ci.report import Report, StageFailure, to_text, write_reports
from ci.stages import Built

COMMANDS = {
    "base": "build the base target (distribution dar, par2, python3)",
    "final": "build base, then the final image with dar-backup and its labels",
    "test": "build, then run FULL → DIFF → INCR end to end and prove every restore",
    "release": "gate, build, test, then publish the tested image by digest to --repo",
    "refresh": "build and test as a release would; release the next patch only if the base or packages changed",
}
# The commands that publish, and so pass the release gate before anything is built.
PUBLISHING = ("release", "refresh")


def parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python ci/main.py",
        description="Build, test and release the dar-backup image on Dagger or the local Docker engine.",
        epilog="Each option can also come from the environment variable named in brackets; the flag wins.",
    )
    p.add_argument("command", choices=COMMANDS, help="; ".join(f"{k}: {v}" for k, v in COMMANDS.items()))
    p.add_argument(
        "--engine",
        default=env.get("DAR_BACKUP_CI_ENGINE", "auto"),
        choices=ENGINES,
        help="auto: Dagger inside `dagger run`, else local Docker [DAR_BACKUP_CI_ENGINE]",
    )
    p.add_argument(
        "--image-version",
        default=env.get("DAR_BACKUP_IMAGE_VERSION"),
        help="semver of the image, e.g. 1.2.3 (default 0.0.0-dev) [DAR_BACKUP_IMAGE_VERSION]",
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
        "--report-dir",
        type=Path,
        default=Path(env.get("DAR_BACKUP_REPORT_DIR", "reports")),
        help="where the JSON and JUnit reports go (default reports/) [DAR_BACKUP_REPORT_DIR]",
    )
    return p


def refresh_version(root: Path) -> semver.Version:
    try:
        return refresh.next_patch(history.read(root / HISTORY))
    except history.HistoryError as err:
        raise ConfigError(f"build history: {err}") from None


def chosen_platforms(requested: str | None, publishing: bool) -> tuple[str, ...]:
    if requested is None:
        return default_platforms(publishing, host_platform())
    return parse_platforms(requested)


def writable_report_dir(path: Path) -> None:
    """Refuse an unusable --report-dir before the run, not after it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot use {path} as --report-dir: {err.strerror}") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"cannot use {path} as --report-dir: not writable")


async def build_platform(
    engine: Engine, command: str, config: RunConfig, platform: str, report: Report
) -> Built | None:
    """base → final → test for one platform, as far as the command goes; its steps name the platform."""
    with report.on_platform(platform) as facts:
        base_ref, base_digest = await engine.resolve_base(config.base_image, platform)
        if base_ref != config.base_image:
            print(f"[pipeline] {platform}: building FROM {base_ref} instead of {config.base_image}", flush=True)
        config = dataclasses.replace(config, base_image=base_ref, base_digest=base_digest)
        facts.update(base_image=base_ref, base_digest=base_digest or "")
        base_image = await stages.base(engine, config, platform, report)
        if command == "base":
            return None
        built = await stages.final(engine, config, platform, base_image, report)
        facts.update(image=built.image.description, **{f"{k}_version": v for k, v in built.versions.items()})
        if command != "final":
            await stages.test(engine, built.image, report)
        return built


async def pipeline(command: str, engine: Engine, config: RunConfig, report: Report, plan: Plan | None = None) -> None:
    # The upgrade check runs on the first platform: archives are the same bytes on every one.
    first = config.platforms[0]
    # A previous image asked for by name is pulled first: a wrong ref fails before anything is built.
    previous = (
        await upgrade.pull_previous(engine, config.previous_image, None, first, report)
        if config.previous_image
        else None
    )
    builts = [built for p in config.platforms if (built := await build_platform(engine, command, config, p, report))]
    if command in ("base", "final"):
        return
    if plan is not None:
        previous = await upgrade.last_release(engine, plan.previous, plan.auth, first, report)
    if previous is not None:
        await upgrade.check(engine, builts[0].image, builts[0].versions, previous, report)
    if plan is not None and command == "refresh":
        plan = await refresh.worth_releasing(engine, plan, builts, report)
    if plan is not None:
        await release(engine, config, plan, builts, report)


async def execute(engine_name: str, config: RunConfig, report: Report, command: str, env: Mapping[str, str]) -> None:
    # A release is refused before the engine is even opened when its gate says no.
    plan = preflight(config, env, REPO_ROOT, report) if command in PUBLISHING else None
    async with open_engine(engine_name, config) as engine:
        await pipeline(command, engine, config, report, plan)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = parser(env).parse_args(argv)
    try:
        engine_name, why = choose_engine(args.engine, env)
        image_version = args.image_version
        if args.command == "refresh":
            if image_version is not None:
                raise ConfigError("refresh picks its version itself (the next patch after the last release)")
            image_version = str(refresh_version(REPO_ROOT))
        config = build_config(
            image_version=image_version,
            dar_backup_version=args.dar_backup_version,
            base_image=args.base_image,
            repo=args.repo,
            dry_run=args.dry_run,
            report_dir=args.report_dir,
            env=env,
            root=REPO_ROOT,
            previous_image=args.previous_image,
            platforms=chosen_platforms(args.platform, args.command in PUBLISHING),
        )
        if args.previous_image and args.command != "test":
            raise ConfigError("--previous-image applies to test; release and refresh check against the last release")
        if args.dry_run and args.command not in PUBLISHING:
            raise ConfigError(f"--dry-run applies to release and refresh only, not {args.command}")
        writable_report_dir(config.report_dir)
    except (ConfigError, EngineError, PlatformError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[pipeline] {args.command} on {engine_name} ({why}); run {config.run_id}", flush=True)
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

    A failed step or engine is exit 1; Ctrl-C is 130; anything else is a bug in the pipeline,
    also exit 1, and only then is a traceback shown, after the reports are written.
    """
    code, bug = 0, ""
    interrupts: list[int] = []

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        # Ctrl-C also reaches the container in flight, whose exit may surface first as a failed step.
        interrupts.append(signum)
        signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        anyio.run(work)
        report.outcome = "passed"
    except (StageFailure, EngineError) as err:
        report.outcome, report.error, code = "failed", str(err), 1
    except KeyboardInterrupt:
        pass
    except Exception as err:
        report.outcome, report.error, code = "failed", f"internal error: {type(err).__name__}: {err}", 1
        bug = traceback.format_exc()
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupts:
        report.outcome, report.error, code = "interrupted", "interrupted (Ctrl-C); volumes and containers removed", 130
    write_reports(report, report_dir, step_summary)
    print(to_text(report), flush=True)
    if bug:
        print(bug, file=sys.stderr, end="")
    if code:
        detail = report.error.splitlines()
        if len(detail) > 1:
            print("\n".join(detail[1:]), file=sys.stderr)
        print(f"error: {detail[0] if detail else report.outcome}", file=sys.stderr)
    return code
