"""``python -m benchmarks`` (from the repository root), or ``python benchmarks/__main__.py``."""
import sys

if __package__ in (None, ""):                    # run as a script: make the package importable
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks.run import main

if __name__ == "__main__":
    sys.exit(main())
