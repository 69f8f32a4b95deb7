"""The acme_tasks task package: the wheel puts libacme_tasks.so beside this file.

spider-core's executor loads the library itself (found through the entry point
``acme_tasks = acme_tasks`` in the ``spider_core.task_packages`` group); nothing here needs
importing.
"""

from pathlib import Path

#: The native library of task package acme_tasks.
LIBRARY = Path(__file__).with_name("libacme_tasks.so")
