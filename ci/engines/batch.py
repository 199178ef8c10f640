"""Several commands in one container, each coming back as if it had run alone.

A container start costs about 0.2 s on Docker (more under emulation), and the test story's
helper steps (snapshots, hashes, corruptions, version probes) are many short commands. A batch
runs them one after the other in one container, with bash, and splits what the container printed
back into one result per command: its own stdout, stderr and exit code. A failing command does
not stop the ones after it; judging the results stays with the caller.

After each command, a boundary line naming it and its exit code is printed on both streams. The
boundary is random per batch, so no command's output can forge one.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from ci.engines.seam import RunResult

# Run as `bash -c SCRIPT batch BOUNDARY COUNT ARG… COUNT ARG…`: each command is given as its
# argument count and its arguments, so none is ever re-parsed by a shell.
SCRIPT = r"""boundary=$1
shift
index=0
while [ "$#" -gt 0 ]; do
	count=$1
	shift
	"${@:1:count}"
	code=$?
	shift "$count"
	printf '\n%s %d %d\n' "$boundary" "$index" "$code"
	printf '\n%s %d %d\n' "$boundary" "$index" "$code" >&2
	index=$((index + 1))
done
"""
# What a command the container never reached comes back with (no process exits with it).
NOT_RUN = -1


def _new_boundary() -> str:
    return f"dar-backup-ci-batch-{secrets.token_hex(8)}"


@dataclass(frozen=True)
class Batch:
    commands: tuple[tuple[str, ...], ...]
    boundary: str = field(default_factory=_new_boundary)

    @classmethod
    def of(cls, commands: Sequence[Sequence[str]]) -> Batch:
        return cls(tuple(tuple(command) for command in commands))

    @property
    def argv(self) -> list[str]:
        argv = ["bash", "-c", SCRIPT, "batch", self.boundary]
        for command in self.commands:
            argv += [str(len(command)), *command]
        return argv

    def results(self, container: RunResult) -> list[RunResult]:
        """One result per command, from what the batch's container printed.

        Commands after the last boundary never ran (the container died or was refused): they
        come back failed with NOT_RUN, carrying what the container printed last.
        """
        outs, out_rest = self._split(container.stdout)
        errs, err_rest = self._split(container.stderr)
        results = [RunResult(code, out, err) for (code, out), (_, err) in zip(outs, errs, strict=False)]
        note = f"\n(not run: the batch's container exited {container.exit_code})"
        missing = len(self.commands) - len(results)
        return results + [RunResult(NOT_RUN, out_rest, err_rest + note)] * missing

    def _split(self, text: str) -> tuple[list[tuple[int, str]], str]:
        """(exit code, output) per command that finished, and what was printed after the last."""
        pieces: list[tuple[int, str]] = []
        start = 0
        for match in re.finditer(rf"\n{re.escape(self.boundary)} (\d+) (-?\d+)\n", text):
            if int(match[1]) != len(pieces):
                break
            pieces.append((int(match[2]), text[start : match.start()]))
            start = match.end()
        return pieces, text[start:]
