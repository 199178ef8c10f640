"""What a run did, step by step: JSON, JUnit XML, a Markdown summary and a short text summary."""

from __future__ import annotations

import asyncio
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ci.core.errors import OutputError, PipelineError
from ci.core.files import write_atomically
from ci.core.log import progress, say


@dataclass
class Step:
    stage: str
    name: str
    status: str = "passed"
    seconds: float = 0.0
    message: str = ""
    # The platform the step ran for; empty for steps about the run as a whole (gates, the index).
    platform: str = ""

    @property
    def where(self) -> str:
        return f"{self.stage} {self.platform}" if self.platform else self.stage


@dataclass
class Report:
    command: str
    engine: str
    run: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    outcome: str = "running"
    error: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Not a field: which platform the steps now being recorded are for. A context variable,
        # so that the test stages of several platforms, each in a task of its own, record theirs.
        self._platform: ContextVar[str] = ContextVar(f"report-platform-{id(self)}", default="")

    @property
    def platform(self) -> str:
        return self._platform.get()

    @contextmanager
    def on_platform(self, platform: str) -> Iterator[dict[str, str]]:
        """Record steps as the platform's; yields the platform's facts in `run["platforms"]`."""
        token = self._platform.set(platform)
        try:
            yield self.run.setdefault("platforms", {}).setdefault(platform, {})
        finally:
            self._platform.reset(token)

    @contextmanager
    def step(self, stage: str, name: str, *, gating: bool = True) -> Iterator[Step]:
        """Time a step; a failure inside it is recorded, then propagates unchanged.

        A PipelineError is the step failing (its exit code travels with it); a step that is not
        gating records it as a warning and lets the run go on. Anything else is a bug: recorded
        as failed, and raised as it is.
        """
        step = Step(stage, name, platform=self.platform)
        started = time.monotonic()
        say(step.where, f"{name} ...")
        try:
            with progress(step.where, name):
                yield step
        except PipelineError as err:
            # Output that does not read is named by the step that read it: the error line says where.
            step.message = f"{name}: {err}" if isinstance(err, OutputError) else str(err)
            step.status = "failed" if gating else "warning"
            if gating and isinstance(err, OutputError):
                raise OutputError(step.message) from err
            if gating:
                raise
        except asyncio.CancelledError:  # how anyio cancels on asyncio, the backend anyio.run starts
            # Stopped because work beside it failed (another platform's story): that one failed, not this.
            step.status, step.message = "skipped", "stopped: a step running beside it failed"
            raise
        except BaseException as err:
            step.status = "failed"
            step.message = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            raise
        finally:
            step.seconds = round(time.monotonic() - started, 3)
            self.steps.append(step)
            say(step.where, f"{name}: {step.status} ({step.seconds:.1f}s)")

    def skip(self, stage: str, name: str, reason: str) -> None:
        """A check that could not apply, recorded with why: never a silent pass."""
        step = Step(stage, name, "skipped", 0.0, reason, self.platform)
        self.steps.append(step)
        say(step.where, f"{name}: {reason}")

    @property
    def failed(self) -> list[Step]:
        return [s for s in self.steps if s.status == "failed"]


def to_json(report: Report) -> str:
    return json.dumps(asdict(report), indent=2, ensure_ascii=False) + "\n"


def to_junit(report: Report) -> str:
    suites = ET.Element("testsuites", name=f"dar-backup-image {report.command}")
    by_stage: dict[str, list[Step]] = {}
    for step in report.steps:
        by_stage.setdefault(step.where, []).append(step)
    for stage, steps in by_stage.items():
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=stage,
            tests=str(len(steps)),
            failures=str(sum(s.status == "failed" for s in steps)),
            errors="0",
            skipped=str(sum(s.status == "skipped" for s in steps)),
            time=f"{sum(s.seconds for s in steps):.3f}",
        )
        for step in steps:
            case = ET.SubElement(suite, "testcase", classname=f"{report.command}.{step.stage}", name=step.name)
            case.set("time", f"{step.seconds:.3f}")
            first_line = step.message.splitlines()[0] if step.message else ""
            if step.status == "failed":
                failure = ET.SubElement(case, "failure", message=first_line)
                failure.text = step.message
            elif step.status == "skipped":
                ET.SubElement(case, "skipped", message=first_line)
            elif step.status == "warning":
                ET.SubElement(case, "system-out").text = f"warning (not gating): {step.message}"
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def to_markdown(report: Report) -> str:
    icon = {"passed": "✅", "failed": "❌", "skipped": "⏭️ skipped", "warning": "⚠️ warning"}
    lines = [
        f"## dar-backup-image `{report.command}` on {report.engine}: {report.outcome}",
        "",
        "| stage | step | result | seconds |",
        "|---|---|---|---:|",
    ]
    for step in report.steps:
        lines.append(f"| {step.where} | {step.name} | {icon.get(step.status, step.status)} | {step.seconds:.1f} |")
    if report.notes:
        lines += ["", *(f"- {note}" for note in report.notes)]
    if report.error:
        lines += ["", f"**Error:** {report.error.splitlines()[0]}"]
    return "\n".join(lines) + "\n"


def to_text(report: Report) -> str:
    total = sum(s.seconds for s in report.steps)
    head = f"{report.command} on {report.engine}: {report.outcome} — {len(report.steps)} steps, {total:.1f}s"
    failed = [
        f"  {s.status}: [{s.where}] {s.name}: {s.message.splitlines()[0] if s.message else ''}"
        for s in report.steps
        if s.status != "passed"
    ]
    return "\n".join([head, *(f"  {note}" for note in report.notes), *failed])


def write_reports(report: Report, report_dir: Path, step_summary: str | None) -> None:
    write_atomically(report_dir / f"{report.command}.json", to_json(report))
    write_atomically(report_dir / f"{report.command}.junit.xml", to_junit(report))
    if step_summary:
        with Path(step_summary).open("a", encoding="utf-8") as handle:
            handle.write(to_markdown(report))
