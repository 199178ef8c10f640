"""bench/run.py's choice of families, and the Dagger family's engine and CLI, from the environment."""

import os
import stat

import anyio
import pytest

from bench import fresh, on_dagger
from bench.harness import Bench
from bench.run import FAMILIES, chosen, parse


def test_all_families_by_default_in_their_order():
    assert (
        chosen(None, no_foreign=False) == ["build", "start", "stage", "emulated", "fresh", "dagger"] == list(FAMILIES)
    )
    assert chosen("dagger, start,build", no_foreign=False) == ["build", "start", "dagger"]


def test_no_foreign_leaves_out_the_emulated_platform():
    assert "emulated" not in chosen(None, no_foreign=True)
    assert chosen("emulated,start", no_foreign=True) == ["start"]


def test_an_unknown_family_is_a_usage_error(capsys):
    with pytest.raises(ValueError, match="no family bulid"):
        chosen("bulid,start", no_foreign=False)
    with pytest.raises(SystemExit) as exited:
        parse(["--only", "bulid"])
    assert exited.value.code == 2
    assert "(the families: build, start, stage, emulated, fresh, dagger)" in capsys.readouterr().err


def test_documented_options_still_parse():
    args = parse(["--large", "--cold-runs", "2", "--no-foreign", "--out", "x.json"])
    assert (args.large, args.cold_runs, args.families, str(args.out)) == (
        True,
        2,
        ["build", "start", "stage", "fresh", "dagger"],
        "x.json",
    )


def test_no_engine_named_means_no_dagger_figures(monkeypatch):
    monkeypatch.delenv(on_dagger.RUNNER_HOST, raising=False)
    measured = anyio.run(on_dagger.measure, Bench("docker", "ubuntu:24.04", "ubuntu:24.04", "1.1.11"))
    assert measured.figures == []
    assert measured.notes == {"Dagger": ["no engine: _EXPERIMENTAL_DAGGER_RUNNER_HOST is not set"]}


def test_the_cli_is_the_named_one_else_dagger_on_path(tmp_path):
    runner = {on_dagger.RUNNER_HOST: "unix:///run/dagger/engine.sock"}
    assert on_dagger.dagger_cli({**runner, on_dagger.CLI_BIN: "/opt/dagger", "PATH": ""}) == "/opt/dagger"
    cli = tmp_path / "dagger"
    cli.write_text("#!/bin/sh\n")
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    assert on_dagger.dagger_cli({**runner, "PATH": f"{tmp_path}{os.pathsep}/nowhere"}) == str(cli)
    assert on_dagger.dagger_cli({"PATH": str(tmp_path)}) is None


def test_an_engine_without_a_cli_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no dagger CLI: set _EXPERIMENTAL_DAGGER_CLI_BIN"):
        on_dagger.dagger_cli({on_dagger.RUNNER_HOST: "unix:///run/dagger/engine.sock", "PATH": str(tmp_path)})


def test_the_longest_silence_is_the_widest_gap_between_lines():
    assert fresh.longest_silence([0.0, 2.0, 20.0, 21.5]) == 18.0
    assert fresh.longest_silence([0.0]) == 0.0
