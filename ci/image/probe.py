"""What an image says about itself when asked: its tools' versions, its labels, checked against the run."""

from __future__ import annotations

from collections.abc import Mapping

from ci.core.errors import OutputError, StageFailure
from ci.core.versions import TOOLS, tool_version
from ci.engines.seam import Engine, Image
from ci.image import dar_features, gates


async def probe_versions(engine: Engine, image: Image, tools: tuple[str, ...]) -> dict[str, str]:
    """`TOOL --version` inside the image, parsed; a tool that fails to answer fails the stage."""
    versions: dict[str, str] = {}
    for tool in tools:
        result = await engine.run(image, [tool, "--version"])
        try:
            versions[tool] = tool_version(tool, result.stdout + result.stderr)
        except OutputError as err:
            raise StageFailure(f"{tool} --version in {image.description} (exit {result.exit_code}): {err}") from None
    return versions


async def probe_dar_features(engine: Engine, image: Image) -> set[str]:
    """The features `dar -V` inside the image says YES to (ci.image.dar_features names them)."""
    result = await engine.run(image, ["dar", "-V"])
    try:
        return dar_features.features(dar_features.parse(result.stdout))
    except OutputError as err:
        raise StageFailure(f"dar -V in {image.description} (exit {result.exit_code}): {err}") from None


async def gate_image(engine: Engine, image: Image, labels: Mapping[str, str], versions: Mapping[str, str]) -> None:
    """Label gate and version gate on the image pulled back from the registry by digest."""
    gates.refuse(gates.label_gate(await engine.labels(image, list(labels)), labels))
    gates.refuse(gates.version_gate(await probe_versions(engine, image, TOOLS), versions))
