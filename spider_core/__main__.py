import sys

from spider_core.commands import main

sys.exit(main())
