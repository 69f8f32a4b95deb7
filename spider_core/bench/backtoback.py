"""The back-to-back rows of the latency workloads: spider-core called several times in a row
within one round, as a caller that makes its calls back to back does.

The other rows interleave one call per contender per round, which keeps the adaptive spin
(``PoolConfig.spin_us``) off: each call comes after the other contenders' calls, so the
executor's answer never comes while the pool polls. These rows show what spinning does when
calls come back to back: ``spider-core-b2b`` (no spin) and ``spider-core-spin-b2b``
(``spin_us=300``, which also makes the executor spin). Each sample is the mean round trip of
:data:`BURST` calls made back to back, after one call that is not counted (it finds the
executor idle).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from spider_core.bench.contenders import BACK_TO_BACK, Contender, _make_peer, _Ours
from spider_core.bench.workloads import Workload

#: Calls per sample, back to back.
BURST = 8


class BackToBack:
    """A spider-core contender (``_Ours``, ``_OursSync``), :data:`BURST` calls back to back
    per sample; named as it is."""

    metrics: tuple[str, ...] = ("e2e",)

    def __init__(self, ours: Contender) -> None:
        self.name = ours.name
        self._ours = ours

    async def start(self) -> None:
        await self._ours.start()

    async def call(self, workload: Workload) -> tuple[float, ...]:
        await self._ours.call(workload)  # the first finds the executor idle: not counted
        return (statistics.fmean([(await self._ours.call(workload))[0] for _ in range(BURST)]),)

    async def check(self, workload: Workload) -> None:
        await self._ours.check(workload)

    async def close(self) -> None:
        await self._ours.close()


def make_contender(name: str, package_dir: Path) -> Contender | str:
    """The latency contender ``name`` (from ``PEERS``), or why it is skipped."""
    if name in BACK_TO_BACK:
        return BackToBack(_Ours(package_dir, name, **BACK_TO_BACK[name]))
    return _make_peer(name, package_dir)
