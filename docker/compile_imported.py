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

# Runs in a fresh interpreter: imports each console script's module (comma-separated
# module:function entries) and, given arguments, runs the one entry with them; then writes the
# source of every loaded module to $IMPORTED, whatever the command's exit code.
CHILD = """
import atexit, importlib, json, os, sys, types
entries, *argv = sys.argv[1:]

def record():
    # Plain modules only: touching a lazy one (importlib.util.LazyLoader) would import it now, and
    # sys.modules also holds non-modules (typing.io). The spec's origin, not __file__: frozen modules
    # (os, site, codecs) have a __file__ but never load bytecode from a file.
    modules = [m for m in list(sys.modules.values()) if type(m) is types.ModuleType]
    origins = [m.__spec__.origin for m in modules if m.__spec__]
    with open(os.environ["IMPORTED"], "w") as out:
        json.dump(sorted(o for o in origins if o and o.endswith(".py")), out)

atexit.register(record)
names = [entry.split(":") for entry in entries.split(",")]
if argv:
    [(module, function)] = names
    sys.argv = [module, *argv]
    sys.exit(getattr(importlib.import_module(module), function)())
for module, _ in names:
    try:
        importlib.import_module(module)
    except Exception:  # one script's failing import must not hide what the others import
        pass
"""


def start(entries: list[str], argv: list[str], env: dict[str, str], record: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, ",".join(entries), *argv],
        env={**env, "IMPORTED": str(record)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def recorded(child: subprocess.Popen[bytes], record: Path, what: str) -> set[str]:
    child.wait()
    files = json.loads(record.read_text() or "[]") if record.is_file() else []
    if not files:
        raise SystemExit(f"compile_imported: {what} recorded no imports")
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
        e.name: e.value
        for e in importlib.metadata.distribution(distribution).entry_points
        if e.group == "console_scripts"
    }
    sources: set[str] = set()
    with tempfile.TemporaryDirectory() as scratch:
        config = scratch_config(image_config, definition, Path(scratch))
        # The children's own bytecode goes to a scratch cache (not beside the sources, where only
        # this script's unchecked-hash bytecode goes): what the first compiles, the next read.
        env = {**os.environ, "DAR_BACKUP_CONFIG_FILE": config, "PYTHONPYCACHEPREFIX": f"{scratch}/pycache"}
        imports = Path(scratch) / "imports.json"
        sources |= recorded(start(sorted(entries.values()), [], env, imports), imports, "importing the console scripts")
        # The two commands at once: each reads the bytecode the imports wrote.
        commands = [(name, argv, Path(scratch) / f"{name}.json") for name, argv in start_commands(config)]
        children = [(start([entries[name]], argv, env, record), record, name) for name, argv, record in commands]
        for child, record, name in children:
            sources |= recorded(child, record, name)
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
