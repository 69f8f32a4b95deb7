"""Statistics for the benchmark: :func:`percentile`, the nearest-rank percentile, and
:class:`Stats`, the summary of one series of samples in µs (count, mean, p50/p90/p95/p99, min
and max) that the report prints and writes for every contender and metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from attrs import frozen


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ascending ``sorted_values``.

    rank = ceil(p/100 * n), clamped to 1..n; the value is ``sorted_values[rank - 1]``, so
    p=0 gives the first value and p=100 the last.

    :raises ValueError: ``sorted_values`` is empty or ``p`` is outside 0..100.
    """
    if not sorted_values:
        raise ValueError("cannot take a percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {p!r}")
    n = len(sorted_values)
    # round() drops float noise such as 0.07 * 100 == 7.000000000000001 before ceil().
    rank = math.ceil(round(p * n / 100, 9))
    return sorted_values[min(max(rank, 1), n) - 1]


@frozen(kw_only=True)
class Stats:
    """A summary of samples (µs): nearest-rank percentiles, mean, extremes."""

    count: int
    avg: float
    p50: float
    p90: float
    p95: float
    p99: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: Iterable[float]) -> Stats:
        """Summarise ``samples``.

        :raises ValueError: there are none.
        """
        values = sorted(samples)
        if not values:
            raise ValueError("cannot summarise an empty list of samples")
        return cls(
            count=len(values),
            avg=sum(values) / len(values),
            p50=percentile(values, 50),
            p90=percentile(values, 90),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            min=values[0],
            max=values[-1],
        )
