"""Run the spider-core benchmark: ``python benchmarks/run_bench.py [--quick] [--output DIR]``.

The same as ``spider bench`` (options: ``--help``).
"""

import sys

from spider_core.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="run_bench.py"))
