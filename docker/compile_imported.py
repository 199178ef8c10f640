"""Compile, at build time, the modules that dar-backup's own commands import, and no others.

Run by the venv's python in the builder stage. Every command imports its modules at each start;
without bytecode in the image each start compiles them again (the image is read-only to its
user). Compiling the whole venv would add about 10 MB of bytecode nobody loads (Pygments'
lexers, Jinja2), so only what the console scripts' modules pull in is compiled, as
unchecked-hash .pyc files: reproducible, and never rewritten at run time.
"""

import importlib
import importlib.metadata
import py_compile
import sys
from pathlib import Path


def entry_modules(distribution: str) -> set[str]:
    scripts = importlib.metadata.distribution(distribution).entry_points
    return {entry.module for entry in scripts if entry.group == "console_scripts"}


def main() -> int:
    for module in sorted(entry_modules(sys.argv[1])):
        importlib.import_module(module)
    venv = Path(sys.prefix)
    sources = sorted(
        Path(m.__file__)
        for m in list(sys.modules.values())
        if getattr(m, "__file__", None) and Path(m.__file__).is_relative_to(venv) and m.__file__.endswith(".py")
    )
    for source in sources:
        py_compile.compile(str(source), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    print(f"compiled {len(sources)} modules that dar-backup's commands import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
