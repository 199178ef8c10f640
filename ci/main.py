"""`python ci/main.py [--engine auto|dagger|docker] base|final|test|release …` (also under `dagger run`)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, Python puts ci/ first on the path; the package lives one level up.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    from ci.cli import main

    sys.exit(main())
