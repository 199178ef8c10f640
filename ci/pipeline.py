"""The pipeline as its stages: base → final for each platform, the scan, the test stage, upgrade check, release."""

from __future__ import annotations

from collections.abc import Mapping

from ci.core.concurrency import at_once
from ci.core.config import REPO_ROOT, RunConfig
from ci.core.labels import DAR_FEATURES_LABEL
from ci.core.log import say
from ci.core.report import Report
from ci.engines.seam import Engine
from ci.engines.select import open_engine
from ci.oci.auth import RegistryAuth
from ci.release import refresh
from ci.release.plan import Plan, preflight
from ci.release.publish import release
from ci.stages import build, scenario, upgrade, vulnscan
from ci.stages.build import Built

# The commands that publish, and so pass the release gate before anything is built.
PUBLISHING = ("release", "refresh")


async def build_platform(
    engine: Engine, command: str, config: RunConfig, platform: str, report: Report, auth: RegistryAuth | None
) -> Built | None:
    """base → final for one platform, as far as the command goes; its steps name the platform."""
    with report.on_platform(platform) as facts:
        base = await engine.resolve_base(config.base_image, platform, auth)
        if base.name != config.base_image:
            say("pipeline", f"{platform}: building FROM {base.name} instead of {config.base_image}")
        facts.update(base_image=base.name, base_digest=base.digest or "", base_local_id=base.local_id or "")
        base_image = await build.base(engine, config, base, platform, report, builder=command != "base")
        if command == "base":
            return None
        built = await build.final(engine, config, base, platform, base_image, report)
        facts.update(image=built.image.description, **{f"{k}_version": v for k, v in built.versions.items()})
        facts.update(dar_features=built.labels[DAR_FEATURES_LABEL])
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
    # A base on the release's own registry is read with the release's credentials.
    auth = plan.auth if plan is not None else None
    built = [b for p in config.platforms if (b := await build_platform(engine, command, config, p, report, auth))]
    if command in ("base", "final"):
        return
    # What needs only the built images comes before the test stage's minutes: a refresh with
    # nothing to release ends here, and a release the scan refuses stops before testing.
    if plan is not None and command == "refresh":
        plan = await refresh.worth_releasing(engine, config, plan, built, report)
        if plan is None:
            return
    # A release gates on the scan, test only reports it.
    scans = await vulnscan.gate(config, built, report, gating=plan is not None)

    async def test_on_its_platform(candidate: Built) -> None:
        with report.on_platform(candidate.platform):
            await scenario.test_image(engine, candidate.image, report)

    # Every platform's story at once, each on volumes of its own: the host's need not wait behind
    # an emulated one's minutes. The first to fail stops the others.
    await at_once(*(test_on_its_platform(candidate) for candidate in built))
    if plan is not None:
        previous = await upgrade.last_release(engine, plan.previous, plan.auth, first, report)
    if previous is not None:
        await upgrade.check(engine, built[0].image, built[0].versions, previous, report)
    if plan is not None:
        await release(engine, config, plan, built, report, scans)


async def execute(engine_name: str, config: RunConfig, report: Report, command: str, env: Mapping[str, str]) -> None:
    # A release is refused before the engine is even opened when its gate says no.
    plan = preflight(config, env, REPO_ROOT, report) if command in PUBLISHING else None
    async with open_engine(engine_name, config.run_id, REPO_ROOT) as engine:
        await pipeline(command, engine, config, report, plan)
