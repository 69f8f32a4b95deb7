"""Run the spider-core benchmark: ``python benchmarks/run_bench.py [--quick] [--out DIR]``.

Builds ``task_packages/integration_test_tasks`` into a temporary directory unless
``--package-dir`` is given, then calls :func:`spider_core.bench.main` (options: ``--help``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from spider_core.bench import main
from spider_core.build import build_package

SOURCE = Path(__file__).resolve().parent.parent / "task_packages" / "integration_test_tasks"


def run(argv: list[str]) -> int:
    if any(arg == "--package-dir" or arg.startswith("--package-dir=") for arg in argv):
        return main(argv, prog="run_bench.py")
    with tempfile.TemporaryDirectory(prefix="spider-bench-") as package_dir:
        build_package(SOURCE, package_dir)
        return main(["--package-dir", package_dir, *argv], prog="run_bench.py")


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
