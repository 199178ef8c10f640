"""The documentation holds together: every relative link and anchor resolves, every option is documented."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from ci.cli import parser
from ci.core.config import REPO_ROOT

# [text](target) outside code; images too. Targets with a scheme (https:, mailto:) are not ours to check.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def documents(root: Path = REPO_ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]


def prose(text: str) -> str:
    """The text without code blocks and inline code, where a `[x](y)` is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = unicodedata.normalize("NFC", heading.strip().lower())
    text = re.sub(r"[`*_]", "", re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text))
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor, numbered as GitHub numbers repeated headings (`-1`, `-2`)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", text), re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    text = path.read_text()
    problems = []
    for target in LINK.findall(prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{path.name}: {target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            problems.append(f"{path.name}: {target}: no such heading in {linked.name}")
    return problems


def test_every_relative_link_and_anchor_in_the_docs_resolves():
    assert [problem for path in documents() for problem in broken_links(path)] == []


def test_a_broken_link_or_anchor_is_found(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# The pipeline's options\n\n## Exit codes\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/a.md#the-pipelines-options) [ok](docs/a.md#exit-codes) [ok](#top)\n# Top\n"
        "[gone](docs/b.md) [no heading](docs/a.md#releasing) [self](#nowhere) `[code](docs/c.md)`\n"
        "```\n[fenced](docs/d.md)\n```\n[web](https://example.org/x)\n"
    )
    found = [problem for path in documents(tmp_path) for problem in broken_links(path)]
    assert found == [
        "README.md: docs/b.md: no such file",
        "README.md: docs/a.md#releasing: no such heading in a.md",
        "README.md: #nowhere: no such heading in README.md",
    ]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Quick start: build and test it yourself", "quick-start-build-and-test-it-yourself"),
        ("`scripts/run-backup.sh`", "scriptsrun-backupsh"),
        ("Users and root", "users-and-root"),
        ("The test stage (FULL → DIFF → INCR)", "the-test-stage-full--diff--incr"),
    ],
)
def test_anchors_are_githubs(heading: str, anchor: str):
    assert slug(heading) == anchor


def options() -> list[str]:
    """Every long option `python ci/main.py --help` lists."""
    return sorted(
        option
        for action in parser({})._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    )


def undocumented(text: str) -> list[str]:
    """The options that no text names in code (`--repo` or `--repo REGISTRY/NAME`)."""
    return [option for option in options() if not re.search(rf"`{re.escape(option)}(?![\w-])", text)]


def test_every_option_of_the_pipeline_is_documented():
    assert "--dry-run" in options() and "--engine" in options()
    assert undocumented("\n".join(path.read_text() for path in documents())) == []


def test_an_undocumented_option_is_found():
    named = " ".join(f"`{option}`" for option in options() if option != "--report-dir")
    assert undocumented(named + " `--report-directory`") == ["--report-dir"]
