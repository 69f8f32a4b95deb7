"""The executor process: ``python -m spider_core.executor`` (``spider-task-executor``), the
child that runs tasks for the pool, one at a time, on the far end of a protocol channel. It is
split by job: :mod:`~spider_core.executor.serve` (the entry point and the loop that answers
requests), :mod:`~spider_core.executor.channel` (the protocol descriptors and their guard),
:mod:`~spider_core.executor.runner` (loading packages and running tasks),
:mod:`~spider_core.executor.logs` (its JSON-line log) and
:mod:`~spider_core.executor.forkserver` (the fork server it becomes with
``SPIDER_FORK_SERVER`` set).
"""

from spider_core.executor.serve import main

__all__ = ["main"]
