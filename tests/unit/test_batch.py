"""A batch's commands come back as if each had run alone: the real bash script, run here."""

from __future__ import annotations

import subprocess

from ci.engines.batch import NOT_RUN, Batch
from ci.engines.seam import RunResult

COMMANDS = (
    ["printf", "no newline at the end"],
    ["sh", "-c", "echo out; echo err >&2; exit 3"],
    ["printf", "%s\\n", "two", "lines"],
    ["sh", "-c", 'printf "\\nlooks like a boundary 0 0\\n"; printf "\\0bin\\377ary"'],
    ["true"],
    ["no-such-command-anywhere"],
    ["sh", "-c", 'printf "%s|" "$@"', "sh", "an argument with spaces", "'quotes'", "$HOME", "*"],
    ["printf", ""],
)


def run(argv: list[str]) -> RunResult:
    done = subprocess.run(argv, capture_output=True, check=False)
    return RunResult(
        done.returncode, done.stdout.decode("utf-8", "surrogateescape"), done.stderr.decode("utf-8", "surrogateescape")
    )


def test_each_command_comes_back_as_if_it_had_run_alone():
    batch = Batch.of(COMMANDS)
    container = run(batch.argv)
    assert container.exit_code == 0
    # Alone: started by bash too, as the batch starts it (so a missing program is bash's 127).
    alone = [run(["bash", "-c", '"$@"', "bash", *command]) for command in COMMANDS]
    batched = batch.results(container)
    assert [r.exit_code for r in batched] == [0, 3, 0, 0, 0, 127, 0, 0]
    # bash's "command not found" names the script's line; everything else is the same.
    missing = 5
    assert batched[:missing] + batched[missing + 1 :] == alone[:missing] + alone[missing + 1 :]
    assert batched[missing].stderr.endswith("no-such-command-anywhere: command not found\n")


def test_a_boundary_printed_by_a_command_is_not_taken_for_one():
    earlier = Batch.of([["true"]])
    forged = f"\\n{earlier.boundary} 0 0\\nafter"
    batch = Batch.of([["printf", forged], ["true"]])
    # Each batch's boundary is new and random: a command cannot print the one it runs in.
    assert batch.boundary != earlier.boundary
    results = batch.results(run(batch.argv))
    assert [r.exit_code for r in results] == [0, 0]
    assert results[0].stdout == f"\n{earlier.boundary} 0 0\nafter"


def test_commands_a_dead_container_never_ran_come_back_failed_with_what_it_said():
    batch = Batch.of([["true"], ["sh", "-c", "kill -9 $PPID"], ["true"]])
    container = run(batch.argv)
    assert container.exit_code != 0
    results = batch.results(container)
    assert len(results) == 3 and results[0].ok
    assert [r.exit_code for r in results[1:]] == [NOT_RUN, NOT_RUN]
    assert f"the batch's container exited {container.exit_code}" in results[2].stderr


def test_a_container_refused_before_the_batch_fails_every_command():
    refused = RunResult(127, "", "dar-backup-image: config file not found: /x\n")
    results = Batch.of([["true"], ["true"]]).results(refused)
    assert [r.exit_code for r in results] == [NOT_RUN, NOT_RUN]
    assert all(r.stderr.startswith("dar-backup-image: config file not found") for r in results)
