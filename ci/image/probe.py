"""What an image says about itself when asked: its tools' versions, its labels, checked against the run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ci.core.errors import OutputError, StageFailure
from ci.core.versions import TOOLS, tool_version
from ci.engines.batch import Batch
from ci.engines.seam import Engine, Image
from ci.image import dar_features, gates


@dataclass(frozen=True)
class Probe:
    """What the image's tools say of themselves: their versions, and the features dar -V says YES to."""

    versions: dict[str, str]
    features: set[str]


async def probe(engine: Engine, image: Image, tools: tuple[str, ...], *, features: bool = False) -> Probe:
    """`TOOL --version` for each tool (and `dar -V` with `features`) inside the image, in one container.

    A tool that fails to answer, or answers what cannot be read, fails the stage.
    """
    dar_v = [["dar", "-V"]] if features else []
    batch = Batch.of([*([tool, "--version"] for tool in tools), *dar_v])
    results = batch.results(await engine.run(image, batch.argv))
    versions: dict[str, str] = {}
    for tool, result in zip(tools, results, strict=False):
        try:
            versions[tool] = tool_version(tool, result.stdout + result.stderr)
        except OutputError as err:
            raise StageFailure(f"{tool} --version in {image.description} (exit {result.exit_code}): {err}") from None
    if not features:
        return Probe(versions, set())
    try:
        return Probe(versions, dar_features.features(dar_features.parse(results[-1].stdout)))
    except OutputError as err:
        raise StageFailure(f"dar -V in {image.description} (exit {results[-1].exit_code}): {err}") from None


async def gate_image(engine: Engine, image: Image, labels: Mapping[str, str], versions: Mapping[str, str]) -> None:
    """Label gate and version gate on the image pulled back from the registry by digest."""
    gates.refuse(gates.label_gate(await engine.labels(image, list(labels)), labels))
    gates.refuse(gates.version_gate((await probe(engine, image, TOOLS)).versions, versions))
