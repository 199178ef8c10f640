"""Compile, at build time, the modules that dar-backup's commands import at their start, and no others.

    python -B compile_imported.py DISTRIBUTION STAGE CONFIG DEFINITION

Run by the venv's python in the builder stage. Every command imports its modules at each start;
without bytecode in the image each start compiles them again (the image is read-only to its
user), and the standard library's are most of dar-backup's start. Compiling the whole venv and
standard library would add tens of MB of bytecode nobody loads (Pygments' lexers, Jinja2,
tkinter), so only what is really imported is compiled, found in fresh interpreters: each console
script's module is imported, then dar-backup starts (`--list-definitions`: config and logging, as
every command sets them up) and the entrypoint's `manager --create-db` runs, on CONFIG with its
directories moved to a scratch tree holding DEFINITION. The bytecode is unchecked-hash:
reproducible, and never rewritten at run time. The venv's goes next to its sources; the standard
library's goes under STAGE (the same paths below it) for the final stage to copy, since the
builder's own /usr is not part of the image.
"""

import configparser
import importlib.metadata
import importlib.util
import json
import os
import py_compile
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

# Runs in a fresh interpreter: imports or runs one entry point, then writes the source of every
# loaded module to $IMPORTED, whatever the command's exit code.
CHILD = """
import atexit, importlib, json, os, sys, types
module, function, *argv = sys.argv[1:]

def record():
    # Plain modules only: touching a lazy one (importlib.util.LazyLoader) would import it now, and
    # sys.modules also holds non-modules (typing.io). The spec's origin, not __file__: frozen modules
    # (os, site, codecs) have a __file__ but never load bytecode from a file.
    modules = [m for m in list(sys.modules.values()) if type(m) is types.ModuleType]
    origins = [m.__spec__.origin for m in modules if m.__spec__]
    with open(os.environ["IMPORTED"], "w") as out:
        json.dump(sorted(o for o in origins if o and o.endswith(".py")), out)

atexit.register(record)
entry = getattr(importlib.import_module(module), function)
if argv:
    sys.argv = [module, *argv]
    sys.exit(entry())
"""


def imported_by(module: str, function: str, argv: list[str], env: dict[str, str]) -> set[str]:
    with tempfile.NamedTemporaryFile(suffix=".json") as record:
        subprocess.run(
            [sys.executable, "-B", "-c", CHILD, module, function, *argv],
            env={**env, "IMPORTED": record.name},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        files = json.loads(Path(record.name).read_text() or "[]")
    if not files:
        raise SystemExit(f"compile_imported: {module}:{function} {' '.join(argv)} recorded no imports")
    return set(files)


def scratch_config(config: str, definition: str, root: Path) -> str:
    """CONFIG with its log and directories under root, and DEFINITION in its backup.d."""
    parser = configparser.ConfigParser(inline_comment_prefixes=["#"])
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(config)
    parser["MISC"]["LOGFILE_LOCATION"] = str(root / "dar-backup.log")
    for key in parser["DIRECTORIES"]:
        (root / key).mkdir()
        parser["DIRECTORIES"][key] = str(root / key)
    (root / "BACKUP.D_DIR" / Path(definition).name).write_text(Path(definition).read_text())
    with (root / "dar-backup.conf").open("w") as out:
        parser.write(out)
    return str(root / "dar-backup.conf")


def start_commands(config: str) -> list[tuple[str, list[str]]]:
    return [
        ("dar-backup", ["--list-definitions", "--config-file", config]),
        ("manager", ["--create-db", "--config-file", config]),
    ]


def main() -> int:
    distribution, stage, image_config, definition = sys.argv[1:5]
    entries = {
        e.name: e for e in importlib.metadata.distribution(distribution).entry_points if e.group == "console_scripts"
    }
    sources: set[str] = set()
    with tempfile.TemporaryDirectory() as scratch:
        config = scratch_config(image_config, definition, Path(scratch))
        env = {**os.environ, "DAR_BACKUP_CONFIG_FILE": config}
        for entry in entries.values():
            module, function = entry.value.split(":")
            sources |= imported_by(module, function, [], env)
        for name, argv in start_commands(config):
            module, function = entries[name].value.split(":")
            sources |= imported_by(module, function, argv, env)
    venv, stdlib = Path(sys.prefix), Path(sysconfig.get_paths()["stdlib"])
    counts = {"venv": 0, "stdlib": 0}
    for source in sorted(Path(s) for s in sources):
        if source.is_relative_to(venv):
            cfile, counts["venv"] = None, counts["venv"] + 1
        elif source.is_relative_to(stdlib):
            cached = Path(importlib.util.cache_from_source(str(source)))
            cfile, counts["stdlib"] = str(Path(stage) / cached.relative_to("/")), counts["stdlib"] + 1
        else:
            continue
        py_compile.compile(
            str(source), cfile=cfile, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
        )
    print(
        f"compiled the modules dar-backup's commands import: {counts['venv']} of its venv, {counts['stdlib']} standard"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
