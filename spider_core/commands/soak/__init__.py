"""``spider soak``: run many tasks with faults mixed in and check what the pool survives.

Its modules: :mod:`~spider_core.commands.soak.plan` (the faults and the plan),
:mod:`~spider_core.commands.soak.probes` (what the parent holds, from ``/proc``),
:mod:`~spider_core.commands.soak.runner` (the run), :mod:`~spider_core.commands.soak.summary`
(the invariants and the table), :mod:`~spider_core.commands.soak.inject` (faults for the tests
only) and :mod:`~spider_core.commands.soak.command` (the command).

:func:`soak` drives a :class:`~spider_core.pool.ProcessPool` with ``tasks`` tasks from
``callers`` concurrent asyncio callers over ``slots`` slots. A ``fault_rate`` share of the
tasks are faults, drawn evenly from :data:`FAULTS`: a segfault, an abort, an ``_exit``, a hard
timeout, a call cancelled while its task runs, a task that writes garbage to its stdout, a
large output, a task failure, and an idle executor SIGKILLed from outside (then a task runs).
The others echo a token unique to the task (``sleep_and_echo`` of the bundled
``integration_test_tasks``), or run a task of the user's package whose values must equal
those of its first run.

It returns a :class:`SoakSummary`; ``summary.failures`` names every invariant that broke, one
sentence each (empty: all held):

- **outcomes**: every task ends in the outcome its kind must have;
- **lost**: every call returns an outcome (or, for a cancelled one, is cancelled);
- **misattributed**: no task receives values that are not its own;
- **descriptors** and **children**: the parent has as many open file descriptors and child
  processes after the pool closed as before it started (with ``shm_threshold``, this covers
  the shared-memory regions too: each region, and each mapping of one, holds a descriptor);
- **respawns** and **exits**: one replacement executor per fault that ends one, and the
  ``spider_executor_exited`` reasons match the faults;
- **recovery**: after every such fault, a task succeeds on an executor started after it.

Parent RSS growth, the slowest recovery and the longest queue wait are reported, not checked.

For the tests that prove the checks can fail, ``_inject`` (or ``$SPIDER_SOAK_INJECT`` for the
command) breaks one on purpose: ``"misattribute"`` hands a task another task's result,
``"leak-fd"`` opens a descriptor it does not close before measuring, ``"lose"`` drops one
outcome.
"""

from __future__ import annotations

from spider_core.commands.soak.inject import INJECTIONS
from spider_core.commands.soak.plan import FAULTS, SoakError, soak_package_dir
from spider_core.commands.soak.runner import run_soak, soak
from spider_core.commands.soak.summary import KindResult, SoakSummary

__all__ = [
    "FAULTS",
    "INJECTIONS",
    "KindResult",
    "SoakError",
    "SoakSummary",
    "run_soak",
    "soak",
    "soak_package_dir",
]
