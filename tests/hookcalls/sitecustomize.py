"""Run at the start of every Python child of the test session, which puts this directory on
``PYTHONPATH``: record the spider_core hooks the child calls (see ``record_hooks``)."""

import record_hooks

record_hooks.record_in_child()
