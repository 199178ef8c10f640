"""The pipeline's Dagger path, proven against the pinned Dagger API schema without an engine."""

from __future__ import annotations

import importlib.metadata
import json
import re
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from ci.cli import run_reported
from ci.core.baseimage import BaseImage
from ci.core.config import REPO_ROOT, RunConfig, build_config
from ci.core.errors import RegistryError, StageFailure
from ci.core.labels import BASE_DIGEST, BASE_LOCAL_ID, DAR_FEATURES_LABEL, TOOL_LABELS, oci_labels
from ci.core.platforms import host_platform, slug
from ci.core.report import Report
from ci.core.versions import TOOLS
from ci.engines.dagger import CACHE_BUSTER, LOOPBACK_ALIAS, RELAY, dagger_engine
from ci.image.dar_features import features, label_value, parse
from ci.image.sbom import sbom_file
from ci.oci.auth import SecretRef
from ci.pipeline import pipeline
from ci.release.plan import preflight
from ci.release.signing import (
    KEY_PATH,
    PROVENANCE,
    REGISTRY_CONFIG_DIR,
    SBOM,
    Cosign,
    build_tools,
    sign_args,
    signing_identity,
    verify_args,
)
from ci.stages.scenario import PATHS
from tests.support.recording import DAGGER_VERSION, Chain, RecordingSession, calls
from tests.support.releasing import clean_db
from tests.support.samples import DAR_V_BOOKWORM, DISTS, release_config
from tests.support.vulndb import record, write_db
from tests.support.world import ENGINE_VERSION, World, batch_commands

SECRET_TEXT = "-----BEGIN CERTIFICATE-----PLAINTEXT-MARKER-7f3a"


@dataclass
class Recorded:
    session: RecordingSession
    config: RunConfig
    report: Report
    cert: Path
    exit_code: int | None = None

    def execs(self) -> list[Chain]:
        return [chain for chain, leaf in self.session.answered if leaf == "exitCode"]

    def volume_keys(self) -> set[str]:
        return {c[0][1]["key"] for c in self.session.chains.values() if c and c[0][0] == "cacheVolume"}

    def build(self, target: str) -> dict:
        return next(a for c in self.session.chains.values() for a in calls(c, "dockerBuild") if a["target"] == target)


def run_pipeline(
    schema, world: World, command: str, tmp_path: Path, monkeypatch, reported=False, previous_image=None, platforms=()
) -> Recorded:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cert = tmp_path / "proxy-ca.pem"
    cert.write_text(SECRET_TEXT)
    monkeypatch.setenv("PIP_CERT", str(cert))
    session = RecordingSession(schema, world.answer)
    client = session.client()
    config = build_config(
        image_version="1.4.0",
        dar_backup_version=None,
        base_image=None,
        repo=None,
        dry_run=False,
        report_dir=tmp_path,
        env={},
        previous_image=previous_image,
        platforms=platforms,
    )
    report = Report(command, "dagger")

    async def go() -> None:
        async with dagger_engine(config.run_id, REPO_ROOT, client=client) as engine:
            await pipeline(command, engine, config, report)

    if reported:
        recorded = Recorded(session, config, report, cert)
        recorded.exit_code = run_reported(report, tmp_path, None, go)
        return recorded
    anyio.run(go)
    return Recorded(session, config, report, cert)


# Fewer execs than the whole story has (26: its helper steps batched) means it did not all run.
STORY_EXECS = 25


def test_the_installed_sdk_is_the_pinned_one():
    installed = importlib.metadata.version("dagger-io")
    assert installed == DAGGER_VERSION, (
        f"dagger-io {installed} is installed and {DAGGER_VERSION} pinned in pyproject.toml; after a bump, read what "
        "the new SDK's dagger/client/_core.py calls on conn.session and update tests/support/recording.py"
    )


def test_test_stage_passes_on_dagger_with_every_query_valid(schema, tmp_path, monkeypatch):
    world = World()
    recorded = run_pipeline(schema, world, "test", tmp_path, monkeypatch)
    assert not recorded.report.failed
    assert world.done_levels == ["FULL", "DIFF", "INCR"]
    assert len(recorded.session.queries) > 100


def dockerfile_secret_ids(dockerfile: str) -> set[str]:
    """The ids a Dockerfile's `RUN --mount=type=secret,id=…` mounts."""
    return set(re.findall(r"--mount=type=secret,id=([\w.-]+)", (REPO_ROOT / dockerfile).read_text()))


def build_secrets_by_id(session: RecordingSession) -> dict[str, list[Chain]]:
    """Every secret a dockerBuild received, under the name the engine mounts it by (None: unnamed).

    The engine refuses an unnamed one ("secret has no name and cannot be referenced from
    Dockerfile secret id", the engine's core/container.go): only setSecret names a secret.
    """
    received: dict[str, list[Chain]] = {}
    for chain in session.chains.values():
        for build in calls(chain, "dockerBuild"):
            ids = dockerfile_secret_ids(build["dockerfile"])
            for secret in build.get("secrets") or []:
                made = session.expand(secret)
                named = calls(made, "setSecret")
                name = named[0]["name"] if named else None
                assert name in ids, f"{build['dockerfile']} mounts {sorted(ids)}, dockerBuild got {made}"
                received.setdefault(name, []).append(made)
    return received


def test_builds_both_targets_with_pinned_args_and_the_ca_named_as_the_dockerfile_mounts(
    schema, tmp_path, monkeypatch, docker_hub
):
    recorded = run_pipeline(schema, World(), "test", tmp_path, monkeypatch)
    assert dockerfile_secret_ids("docker/Dockerfile") == {"pip_cert"}
    for target in ("base", "final"):
        build = recorded.build(target)
        assert build["dockerfile"] == "docker/Dockerfile"
        assert {a["name"]: a["value"] for a in build["buildArgs"]} == {
            "BASE_IMAGE": f"ubuntu:24.04@{docker_hub['ubuntu:24.04'][host_platform()]}",
            "DAR_BACKUP_VERSION": "1.1.11",
        }
        # The CA bundle is public: it goes by value, named as the Dockerfile mounts it.
        assert [recorded.session.expand(s) for s in build["secrets"]] == [
            (("setSecret", {"name": "pip_cert", "plaintext": SECRET_TEXT}),)
        ]
    assert set(build_secrets_by_id(recorded.session)) == {"pip_cert"}
    assert by_value(recorded.session) == {"pip_cert"}


def by_value(session: RecordingSession) -> set[str]:
    """The names of every secret whose plaintext went into a query: only public data may."""
    return {a["name"] for chain in session.chains.values() for a in calls(chain, "setSecret")}


def test_final_image_carries_every_label(schema, tmp_path, monkeypatch, docker_hub):
    recorded = run_pipeline(schema, World(), "test", tmp_path, monkeypatch)
    base = BaseImage("ubuntu:24.04", digest=docker_hub["ubuntu:24.04"][host_platform()])
    final = next(
        c
        for c in recorded.session.chains.values()
        if calls(c, "withLabel") and calls(c, "dockerBuild")[0]["target"] == "final"
    )
    expected = {
        **oci_labels(recorded.config, base),
        TOOL_LABELS["dar-backup"]: "1.1.11",
        TOOL_LABELS["dar"]: "2.7.8",
        TOOL_LABELS["par2"]: "0.8.1",
        DAR_FEATURES_LABEL: label_value(features(parse(DAR_V_BOOKWORM))),
    }
    assert {a["name"]: a["value"] for a in calls(final, "withLabel")} == expected
    assert recorded.report.run["platforms"][host_platform()]["dar_features"] == expected[DAR_FEATURES_LABEL]


def test_a_dar_without_a_promised_feature_fails_final_naming_it(schema, tmp_path, monkeypatch):
    without = DAR_V_BOOKWORM.replace("Extended Attributes support  : YES", "Extended Attributes support  : NO")
    with pytest.raises(StageFailure, match=r"^dar lacks the feature 'ea' \(dar -V line 'Extended Attributes support'"):
        run_pipeline(schema, World(dar_v=without), "final", tmp_path, monkeypatch)


def test_every_exec_busts_the_cache_and_scenario_execs_mount_the_run_volumes(schema, tmp_path, monkeypatch):
    recorded = run_pipeline(schema, World(), "test", tmp_path, monkeypatch)
    run_id = recorded.config.run_id
    host = slug(host_platform())
    assert recorded.volume_keys() == {f"dar-backup-ci-{run_id}-{host}-{role}" for role in PATHS}
    busters = []
    for chain in recorded.execs():
        values = [a["value"] for a in calls(chain, "withEnvVariable") if a["name"] == CACHE_BUSTER]
        assert len(values) == 1, chain
        busters.append(values[0])
    assert len(set(busters)) == len(busters) > STORY_EXECS
    assert all(b.startswith(f"{run_id}-") for b in busters)
    scenario_execs = [c for c in recorded.execs() if calls(c, "withMountedCache")]
    assert len(scenario_execs) > STORY_EXECS
    for chain in scenario_execs:
        mounts = {a["path"]: recorded.session.expand(a["cache"]) for a in calls(chain, "withMountedCache")}
        assert mounts == {
            path: (("cacheVolume", {"key": f"dar-backup-ci-{run_id}-{host}-{role}"}),) for role, path in PATHS.items()
        }


def test_every_exec_expects_any_exit_code_so_its_whole_output_is_read(schema, tmp_path, monkeypatch):
    # The pinned engine reads an exec's stdout and stderr whole (core/container_exec.go,
    # metaFileContents: os.ReadFile); a failing exec that does not expect it becomes an error whose
    # output is cut at MaxExecErrorOutputBytes (core/exec_error.go). A batch's results, and a
    # failing command's, need the whole output.
    recorded = run_pipeline(schema, World(), "test", tmp_path, monkeypatch)
    assert len(recorded.execs()) > STORY_EXECS
    assert {calls(c, "withExec")[-1].get("expect") for c in recorded.execs()} == {"ANY"}


def test_two_runs_never_share_volumes(schema, tmp_path, monkeypatch):
    first = run_pipeline(schema, World(), "test", tmp_path / "a", monkeypatch)
    second = run_pipeline(schema, World(), "test", tmp_path / "b", monkeypatch)
    assert first.volume_keys().isdisjoint(second.volume_keys())


def test_scripted_nonzero_exit_fails_the_stage_as_on_docker(schema, tmp_path, monkeypatch):
    with pytest.raises(StageFailure, match=r"dar-backup -D exited 1"):
        run_pipeline(schema, World(exit_codes={"-D": 1}), "test", tmp_path, monkeypatch)


def test_corruption_that_dar_does_not_notice_fails_the_stage(schema, tmp_path, monkeypatch):
    with pytest.raises(StageFailure, match=r"dar -t passed on corrupted"):
        run_pipeline(schema, World(exit_codes={"dar -t": 0}), "test", tmp_path, monkeypatch)


def test_a_batch_cut_short_is_not_the_failure_a_proof_expects(schema, tmp_path, monkeypatch):
    # The container dies at the first dar -t on a corrupted slice: that is no "dar -t fails".
    with pytest.raises(StageFailure, match=r"dar -t of corrupted .*\.1\.dar never ran:\n.*Killed"):
        run_pipeline(schema, World(batch_dies_at="dar -t"), "test", tmp_path, monkeypatch)


def test_a_par2_that_claims_a_repair_it_did_not_make_fails_the_stage(schema, tmp_path, monkeypatch):
    with pytest.raises(
        StageFailure, match=r"par2 repair did not restore the original bytes of .*\.1\.dar \(contiguous\)"
    ):
        run_pipeline(schema, World(par2_lies="always"), "test", tmp_path, monkeypatch)


def test_a_par2_that_claims_success_beyond_its_redundancy_fails_the_stage(schema, tmp_path, monkeypatch):
    with pytest.raises(StageFailure, match=r"par2 repair exited 0 on .*\.2\.dar, damaged beyond its 5 % redundancy"):
        run_pipeline(schema, World(par2_lies="beyond"), "test", tmp_path, monkeypatch)


def test_a_restore_from_an_unrecoverable_slice_that_looks_equal_fails_the_stage(schema, tmp_path, monkeypatch):
    """The story's own guard: a restore that came back equal from an unrecoverable slice is a lie."""
    world = World(damaged_restore_differs=False)
    with pytest.raises(StageFailure, match=r"a restore from unrecoverable .*\.2\.dar equals the FULL snapshot"):
        run_pipeline(schema, world, "test", tmp_path, monkeypatch)


def test_an_overlay_restore_dar_backup_no_longer_refuses_as_non_root_is_reported(schema, tmp_path, monkeypatch):
    """The story proves dar-backup's ACL refusal on every overlay: were it lifted, the stage says so."""
    with pytest.raises(StageFailure, match=r"as uid 1000 over a directory with an extended ACL: expected its refusal"):
        run_pipeline(schema, World(exit_codes={"-r": 0}), "test", tmp_path, monkeypatch)


def test_unparsable_container_output_fails_that_step_and_still_writes_the_reports(
    schema, tmp_path, monkeypatch, capsys
):
    recorded = run_pipeline(schema, World(manifest="no hash section here"), "test", tmp_path, monkeypatch, True)
    assert recorded.exit_code == 1
    failed = recorded.report.failed
    assert [s.name for s in failed] == ["FULL: change data and snapshot"]
    assert failed[0].message.startswith("FULL: change data and snapshot: manifest has no hash section")
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: FULL: change data and snapshot: manifest has no hash")
    saved = json.loads((tmp_path / "test.json").read_text())
    assert saved["outcome"] == "failed" and saved["steps"][-1]["status"] == "failed"
    assert 'failures="1"' in (tmp_path / "test.junit.xml").read_text()


def test_an_sbom_without_dar_backup_fails_the_sbom_gate_on_dagger(schema, tmp_path, monkeypatch):
    without = json.dumps([d for d in json.loads(DISTS) if d["name"] != "dar-backup"])
    with pytest.raises(StageFailure, match="SBOM gate: the SBOM lists no dar-backup"):
        run_pipeline(schema, World(distributions=without), "final", tmp_path, monkeypatch)
    assert list(tmp_path.glob("sbom*")) == []


def test_final_on_dagger_writes_the_sbom_it_read_through_the_seam(schema, tmp_path, monkeypatch):
    recorded = run_pipeline(schema, World(), "final", tmp_path, monkeypatch)
    host = host_platform()
    document = json.loads((tmp_path / sbom_file(host)).read_text())
    assert {c["name"] for c in document["components"]} >= {"dar", "par2", "python3", "dar-backup"}
    assert recorded.report.notes == [
        f"{host} SBOM: 8 components (4 deb, 4 pypi); dar 2.7.8, par2 0.8.1, dar-backup 1.1.11"
    ]


def test_each_platform_is_built_labelled_and_version_gated_on_its_own_container(schema, tmp_path, monkeypatch):
    platforms = ("linux/arm64", "linux/amd64")
    recorded = run_pipeline(schema, World(), "final", tmp_path, monkeypatch, platforms=platforms)
    builds = [a for c in recorded.session.chains.values() for a in calls(c, "dockerBuild")]
    assert sorted({(b["target"], b["platform"]) for b in builds}) == sorted(
        (target, platform) for target in ("base", "builder", "final") for platform in platforms
    )
    for platform in platforms:
        # Every `--version` probe of the version gate ran in a container built for that platform,
        # the final image's in one container with its dar -V.
        probes = [
            batch_commands(calls(c, "withExec")[-1]["args"]) or []
            for c in recorded.execs()
            if calls(c, "dockerBuild")
            and calls(c, "dockerBuild")[0]["platform"] == platform
            and calls(c, "dockerBuild")[0]["target"] == "final"
            and ["dar", "-V"] in (batch_commands(calls(c, "withExec")[-1]["args"]) or [])
        ]
        assert probes == [[[tool, "--version"] for tool in TOOLS] + [["dar", "-V"]]]
        assert (tmp_path / sbom_file(platform)).is_file()
    assert {s.platform for s in recorded.report.steps} == set(platforms)
    assert list(recorded.report.run) == ["platforms"] and set(recorded.report.run["platforms"]) == set(platforms)


def test_each_platform_builds_from_and_is_labelled_with_its_own_base_digest(schema, tmp_path, monkeypatch, docker_hub):
    platforms = ("linux/arm64", "linux/amd64")
    recorded = run_pipeline(schema, World(), "final", tmp_path, monkeypatch, platforms=platforms)
    digests = docker_hub["ubuntu:24.04"]
    finals = {}
    for chain in recorded.session.chains.values():
        for build in calls(chain, "dockerBuild"):
            # The tag cannot move between resolving and building: FROM names the platform's manifest.
            assert {a["name"]: a["value"] for a in build["buildArgs"]}["BASE_IMAGE"] == (
                f"ubuntu:24.04@{digests[build['platform']]}"
            )
            if build["target"] == "final" and calls(chain, "withLabel"):
                finals[build["platform"]] = {a["name"]: a["value"] for a in calls(chain, "withLabel")}
    assert set(finals) == set(platforms)
    for platform, labels in finals.items():
        assert labels[BASE_DIGEST] == digests[platform] != digests["index"]
        assert labels["org.opencontainers.image.base.name"] == "ubuntu:24.04" and BASE_LOCAL_ID not in labels
    assert {p: recorded.report.run["platforms"][p]["base_digest"] for p in platforms} == {
        p: digests[p] for p in platforms
    }


def test_a_base_the_registry_cannot_resolve_stops_the_dagger_run_before_any_build(schema, tmp_path, monkeypatch):
    world = World()
    session = RecordingSession(schema, world.answer)
    client = session.client()

    async def go() -> None:
        async with dagger_engine("c0ffee", REPO_ROOT, client=client) as engine:
            await engine.resolve_base("ubuntu:99.04", "linux/amd64", None)

    with pytest.raises(RegistryError, match="HTTP 404"):
        anyio.run(go)
    assert session.queries == []


def test_upgrade_check_on_dagger_pulls_the_previous_image_by_digest_and_runs_it(schema, tmp_path, monkeypatch):
    previous = "registry.example.org/dar-backup@sha256:" + "9" * 64
    recorded = run_pipeline(schema, World(), "test", tmp_path, monkeypatch, previous_image=previous)
    assert not recorded.report.failed
    pulls = [c for c in recorded.session.chains.values() if calls(c, "from") and not calls(c, "withExec")]
    assert {calls(c, "from")[0]["address"] for c in pulls} == {previous}
    upgrade = [s.name for s in recorded.report.steps if s.stage == "upgrade"]
    assert upgrade[0] == f"pull the previous release {previous} ({host_platform()})"
    assert {calls(c, "container")[0]["platform"] for c in pulls} == {host_platform()}
    assert "INCR: the candidate's PITR from unlabelled's catalog" in upgrade
    assert "rollback: unlabelled restores the candidate's FULL" in upgrade
    # Backups in the upgrade check run in the previous image: its own entrypoint, its own volumes.
    previous_execs = [c for c in recorded.execs() if calls(c, "from") and calls(c, "withMountedCache")]
    flags = [calls(c, "withExec")[-1]["args"][0] for c in previous_execs]
    assert {"-F", "-D", "-I"} <= set(flags)
    backups = [
        calls(c, "withExec")[-1] for c in previous_execs if calls(c, "withExec")[-1]["args"][0] in ("-F", "-D", "-I")
    ]
    assert len(backups) == 3 and all(e.get("useEntrypoint") for e in backups)
    keys = {str(recorded.session.expand(a["cache"])) for c in previous_execs for a in calls(c, "withMountedCache")}
    assert any("-upgrade-" in k for k in keys) and any("-rollback-" in k for k in keys)
    assert all("-upgrade-" in k or "-rollback-" in k for k in keys)


def release_on_dagger(
    schema,
    registry,
    checkout: Path,
    env: dict[str, str],
    dry_run: bool,
    platforms=(),
    world: World | None = None,
    vuln_db: Path | None = None,
):
    """Run the release stages on the recording session; the host-side gates talk to a real registry."""
    session = RecordingSession(schema, (world or World()).answer)
    client = session.client()
    config = release_config(
        f"{registry.address}/dar-backup",
        checkout,
        "3.1.0",
        dry_run=dry_run,
        platforms=platforms,
        vuln_db=vuln_db or clean_db(),
    )
    report = Report("release", "dagger")

    async def go() -> None:
        plan = preflight(config, env, checkout, report)
        async with dagger_engine(config.run_id, REPO_ROOT, client=client) as engine:
            await pipeline("release", engine, config, report, plan)

    failure = None
    try:
        anyio.run(go)
    except StageFailure as err:
        failure = err
    return Recorded(session, config, report, checkout), failure


def test_release_dry_run_on_dagger_gates_and_publishes_nothing(schema, registry, checkout, capsys):
    before = (checkout / "doc/build-history.json").read_bytes()
    recorded, failure = release_on_dagger(schema, registry, checkout, {}, dry_run=True)
    assert failure is None
    assert [s.name for s in recorded.report.steps][-2:] == [
        "one set of tool versions for every platform",
        "dry run: what a release would publish",
    ]
    assert [leaf for _, leaf in recorded.session.answered if leaf == "publish"] == []
    assert f'"{registry.address}/dar-backup:3.1"' in capsys.readouterr().out
    assert registry.tags("dar-backup") == []
    assert (checkout / "doc/build-history.json").read_bytes() == before


def test_release_on_dagger_scans_the_sbom_it_read_through_the_seam_and_refuses_a_fixable_finding(
    schema, registry, checkout, tmp_path
):
    db = write_db(tmp_path / "db", [record("TEST-DAR-1", "Debian", "dar", "2.7.9-1", severity="HIGH")])
    recorded, failure = release_on_dagger(schema, registry, checkout, {}, dry_run=True, vuln_db=db)
    assert failure is not None
    assert str(failure) == (
        "vulnerability gate: 1 fixable at or above high\n"
        f"{host_platform()}: TEST-DAR-1 dar 2.7.8-2+b9 fixed in 2.7.9-1 (high)"
    )
    # The SBOM the scan read came through the Dagger session: dpkg-query and the venv's python ran there.
    execs = [calls(c, "withExec")[-1]["args"] for c in recorded.execs()]
    assert any("dpkg-query" in " ".join(args) for args in execs)
    scan = [s for s in recorded.report.steps if s.stage == "vulnerabilities"]
    assert [(s.name, s.status) for s in scan] == [
        ("scan the SBOM with osv-scanner, offline", "passed"),
        ("vulnerability gate: nothing fixable at or above high", "failed"),
    ]
    assert (checkout / "reports" / f"vulns-{slug(host_platform())}.json").exists()
    assert [leaf for _, leaf in recorded.session.answered if leaf == "publish"] == []
    assert registry.tags("dar-backup") == []


def test_release_on_dagger_publishes_by_secret_reference_and_fails_closed(
    schema, auth_registry, checkout, monkeypatch, tmp_path
):
    password = auth_registry.password
    monkeypatch.setenv("DAR_BACKUP_REGISTRY_PASSWORD", password)
    key = tmp_path / "cosign.key"
    key.write_text(KEY_TEXT)
    env = {
        "DAR_BACKUP_REGISTRY_USERNAME": "releaser",
        "DAR_BACKUP_REGISTRY_PASSWORD": password,
        "DAR_BACKUP_COSIGN_KEY_FILE": str(key),
    }
    world = World()
    recorded, failure = release_on_dagger(schema, auth_registry, checkout, env, dry_run=False, world=world)
    # The scripted engine reports a digest the real registry never received: verification refuses it.
    assert failure is not None
    assert str(failure).startswith(f"verification of {auth_registry.address}/dar-backup:3.1.0 failed")
    published = [chain for chain, leaf in recorded.session.answered if leaf == "publish"]
    assert len(published) == 1
    # Pushed under the run's candidate tag, never the version a user pulls, and never tagless:
    # the engine pushes by tag only and pushes an address without one as `:latest`
    # (the pinned engine: engine/engineutil/containerimage.go PublishContainerImage sets no PushByDigest;
    # engine/server/resolver/resolver.go PushImage applies reference.TagNameOnly).
    ((_, publish),) = world.published
    assert publish["address"] == f"{auth_registry.address}/dar-backup:candidate-{recorded.config.run_id}"
    auth = calls(published[0], "withRegistryAuth")
    assert [(a["address"], a["username"]) for a in auth] == [(auth_registry.address, "releaser")]
    assert recorded.session.expand(auth[0]["secret"]) == (("secret", {"uri": "env://DAR_BACKUP_REGISTRY_PASSWORD"}),)
    assert all(password not in query for query in recorded.session.queries)
    assert by_value(recorded.session) <= {"pip_cert"}
    assert auth_registry.tags("dar-backup") == []
    assert "append the build history" not in [s.name for s in recorded.report.steps]


def test_a_two_platform_release_on_dagger_publishes_one_index_of_both_tested_images(
    schema, registry, checkout, tmp_path
):
    key = tmp_path / "cosign.key"
    key.write_text(KEY_TEXT)
    env = {"DAR_BACKUP_COSIGN_KEY_FILE": str(key)}
    platforms = ("linux/amd64", "linux/arm64")
    world = World()
    recorded, failure = release_on_dagger(schema, registry, checkout, env, False, platforms, world)
    # The scripted digest never reached the real registry: the read-back refuses it, nothing is recorded.
    assert failure is not None and str(failure).startswith(f"verification of {registry.address}/dar-backup:3.1.0")
    ((receiver, args),) = world.published
    assert calls(receiver, "container") == [{}] and not calls(receiver, "dockerBuild")
    assert args["address"] == f"{registry.address}/dar-backup:candidate-{recorded.config.run_id}"
    variants = [recorded.session.expand(v) for v in args["platformVariants"]]
    # Each variant is the final image built for its platform, the very container the test stage ran.
    assert [calls(v, "dockerBuild")[0]["platform"] for v in variants] == list(platforms)
    assert all(calls(v, "dockerBuild")[0]["target"] == "final" and calls(v, "withLabel") for v in variants)
    volumes = []
    for variant in variants:
        scenario = [c for c in recorded.execs() if c[: len(variant)] == variant and calls(c, "withMountedCache")]
        assert len(scenario) > STORY_EXECS
        volumes.append(
            {str(recorded.session.expand(a["cache"])) for c in scenario for a in calls(c, "withMountedCache")}
        )
    # Each platform's story has volumes of its own: the second never sees the first one's data.
    assert volumes[0].isdisjoint(volumes[1])
    assert {s.platform for s in recorded.report.steps if s.stage == "test"} == set(platforms)


KEY_TEXT = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----KEY-MARKER-51c9-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
PASSWORD_TEXT = "PASSWORD-MARKER-8d02"


def test_cosign_on_dagger_gets_key_password_and_login_by_reference_only(schema, tmp_path, monkeypatch, docker_hub):
    key, login = tmp_path / "cosign.key", tmp_path / "config.json"
    key.write_text(KEY_TEXT)
    login.write_text('{"auths": {"registry.example.org": {"auth": "LOGIN-MARKER"}}}')
    monkeypatch.setenv("DAR_BACKUP_COSIGN_PASSWORD", PASSWORD_TEXT)
    identity = signing_identity({"DAR_BACKUP_COSIGN_KEY_FILE": str(key), "DAR_BACKUP_COSIGN_PASSWORD": PASSWORD_TEXT})
    session = RecordingSession(schema, World().answer)
    client = session.client()
    digest, sbom = "sha256:" + "e" * 64, json.dumps({"bomFormat": "CycloneDX", "components": []})
    slsa = json.dumps({"buildDefinition": {"buildType": "b"}, "runDetails": {"builder": {"id": "i"}}})

    async def go() -> None:
        async with dagger_engine("c0ffee", REPO_ROOT, client=client) as engine:
            cosign = Cosign(engine, await build_tools(engine), identity, registry_config=SecretRef(f"file://{login}"))
            public = await cosign.public_key()
            await cosign.sign("registry.example.org/dar-backup", digest, recursive=True)
            await cosign.attest("registry.example.org/dar-backup", digest, sbom)
            await cosign.attest("registry.example.org/dar-backup", digest, slsa, PROVENANCE)
            await cosign.verify(f"registry.example.org/dar-backup@{digest}", digest, public)
            await cosign.verify_attestation(f"registry.example.org/dar-backup@{digest}", digest, public, [sbom])
            ref = f"registry.example.org/dar-backup@{digest}"
            await cosign.verify_attestation(ref, digest, public, [slsa], PROVENANCE)

    anyio.run(go)
    build = next(a for c in session.chains.values() for a in calls(c, "dockerBuild") if a["target"] == "tools")
    assert build["dockerfile"] == "docker/tools.Dockerfile"
    tools_base = f"debian:trixie-slim@{docker_hub['debian:trixie-slim'][host_platform()]}"
    assert {a["name"]: a["value"] for a in build["buildArgs"]} == {"BASE_IMAGE": tools_base}
    execs = [c for c in (chain for chain, leaf in session.answered if leaf == "exitCode") if calls(c, "withExec")]
    cosign_runs = [c for c in execs if calls(c, "withExec")[-1]["args"][0] == "cosign"]
    cosign_execs = {calls(c, "withExec")[-1]["args"][1]: c for c in cosign_runs}
    assert set(cosign_execs) == {"public-key", "sign", "attest", "verify", "verify-attestation"}
    attests = [c for c in cosign_runs if calls(c, "withExec")[-1]["args"][1] == "attest"]
    assert [[(f["path"], f["contents"]) for f in calls(c, "withNewFile")] for c in attests] == [
        [(SBOM.path, sbom)],
        [(PROVENANCE.path, slsa)],
    ]
    for chain in cosign_runs:
        mounted = {a["path"]: session.expand(a["source"]) for a in calls(chain, "withMountedSecret")}
        assert mounted.pop(f"{REGISTRY_CONFIG_DIR}/config.json") == (("secret", {"uri": f"file://{login}"}),)
        variables = {a["name"]: session.expand(a["secret"]) for a in calls(chain, "withSecretVariable")}
        if calls(chain, "withExec")[-1]["args"][1] in ("verify", "verify-attestation"):
            # The engine masks every value of an exec's secrets in its output as `***`
            # (engine/engineutil/secret_scrub.go): a verification, whose output is parsed, gets none.
            assert mounted == {} and variables == {}
            continue
        assert mounted == {KEY_PATH: (("secret", {"uri": f"file://{key.resolve()}"}),)}
        assert variables == {"COSIGN_PASSWORD": (("secret", {"uri": "env://DAR_BACKUP_COSIGN_PASSWORD"}),)}
    assert {"--tlog-upload=false", "--recursive"} <= set(calls(cosign_execs["sign"], "withExec")[-1]["args"])
    for marker in ("KEY-MARKER", PASSWORD_TEXT, "LOGIN-MARKER"):
        assert all(marker not in query for query in session.queries)
    assert by_value(session) == set() and build_secrets_by_id(session) == {}


def test_cosign_reaches_a_loopback_registry_on_dagger_by_a_host_tunnel_under_the_same_address(schema, tmp_path):
    """An exec's 127.0.0.1 is its own: it runs on the engine's bridge (the engine's network/consts.go).

    Host.service makes a port the session's client dials on the host (core/schema/host.go,
    `service`: host defaults to localhost, frontend to backend); withServiceBinding puts its alias
    in the exec's /etc/hosts (engine/engineutil/executor_spec.go). cosign is given the registry's
    own address, as on the local engine: it writes that into what it signs.
    """
    key = tmp_path / "cosign.key"
    key.write_text(KEY_TEXT)
    identity = signing_identity({"DAR_BACKUP_COSIGN_KEY_FILE": str(key)})
    session = RecordingSession(schema, World().answer)
    client = session.client()
    ref = "127.0.0.1:5151/dar-backup@sha256:" + "e" * 64

    async def go() -> None:
        async with dagger_engine("c0ffee", REPO_ROOT, client=client) as engine:
            cosign = Cosign(engine, await build_tools(engine), identity, loopback="127.0.0.1:5151")
            await cosign.sign("127.0.0.1:5151/dar-backup", ref.rpartition("@")[2])
            await cosign.verify(ref, ref.rpartition("@")[2], None)

    anyio.run(go)
    runs = [c for c, leaf in session.answered if leaf == "exitCode" and calls(c, "withExec")]
    assert [calls(c, "withExec")[-1]["args"] for c in runs] == [
        ["sh", "-c", RELAY.format(alias=LOOPBACK_ALIAS), "sh", "127.0.0.1", "5151", "cosign", *args]
        for args in (sign_args(identity, ref, True), verify_args(identity, ref, True))
    ]
    ports = [{"backend": 5151, "frontend": 5151}]  # protocol: the schema's default, TCP
    tunnel = (("host", {}), ("service", {"ports": ports, "host": "127.0.0.1"}))
    for run in runs:
        (binding,) = calls(run, "withServiceBinding")
        assert binding["alias"] == LOOPBACK_ALIAS and session.expand(binding["service"]) == tunnel


def test_the_engine_version_for_provenance_is_the_dagger_engine_s_own(schema):
    session = RecordingSession(schema, World().answer)
    client = session.client()

    async def go() -> str:
        async with dagger_engine("c0ffee", REPO_ROOT, client=client) as engine:
            return await engine.version()

    assert anyio.run(go) == ENGINE_VERSION
    assert [chain for chain, leaf in session.answered if leaf == "version"] == [()]
