import sys

from spider_core.executor import main

sys.exit(main())
