import sys

from spider_core.cli import main

sys.exit(main())
