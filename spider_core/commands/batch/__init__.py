"""``spider batch``: run a JSON-lines file (or standard input) of requests through one pool, or
through the pools of a Dask cluster's workers, one result line per request as it completes.
:mod:`~spider_core.commands.batch.files` reads the requests and the results file,
:mod:`~spider_core.commands.batch.runner` runs them, :mod:`~spider_core.commands.batch.command`
is the command."""

from __future__ import annotations

from spider_core.commands.batch.files import BatchError
from spider_core.commands.batch.runner import run_batch

__all__ = ["BatchError", "run_batch"]
