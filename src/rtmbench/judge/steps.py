"""Steps in a series of runs: where a unit's latency ratio or AP changed level, and by how much.

A unit's history is one value per run (its latency ratio to the same-run reference, its box AP,
its agreement AP), in run order, with the samples behind each value (a latency record's
normalised per-iteration times; a single value for an AP). As asv assumes for its graphs, the
series is piecewise constant plus noise, and the levels are found in two stages:

1. **Candidates** from the PELT change-point search of ``ruptures`` (a maintained library, on
   PyPI, BSD licence; chosen over asv's own step detection because asv is a whole benchmarking
   framework with a compiled extension, where ruptures is the algorithm alone, with a stable
   API): least-squares cost on the series (the logarithm of latency ratios, so that a step is
   relative), segments of at least :data:`MIN_RUNS` runs, penalty ``4 sigma^2 log n`` (a
   Schwarz-type criterion, see :data:`PENALTY`), with sigma the noise of one run estimated
   robustly from the differences of consecutive runs (their median absolute deviation: a step
   or a slow drift does not inflate it).
2. **Significance**: a candidate counts only if the samples of the segment before and of the
   segment after differ by a two-sided Mann-Whitney U test at ``alpha`` (the latency
   tolerance's, 0.01 by default); the least significant candidate is dropped and the segments
   beside it merged, until every step left is significant.

What remains are :class:`Segment` levels (the median of their pooled samples) and the
:class:`Step` between two of them. A slow drift comes out as several small significant steps,
which is why the gate compares a run with the best level of its history, not only the last one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median

MIN_RUNS = 2  # a level is at least two runs: one odd run is noise, not a step
# PELT's penalty, in units of sigma^2 log n. Measured on simulated unchanged histories (the smoke
# baseline's samples resampled with 3 % noise per sample): the Schwarz criterion's 2 named a step
# in 4 of 100 series of 20 runs, 3 in 1, 4 in none (and in 3 of 100 histories of 21 runs with
# two latency series each); every 10 % step at run 20 of 30 was still found with 4 (30 of 30).
PENALTY = 4


@dataclass(frozen=True)
class Segment:
    start: int  # first index in the series
    end: int  # one past the last
    level: float  # median of the pooled samples
    pool: tuple[float, ...]

    @property
    def runs(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Step:
    """A change of level at index ``at`` (the first run of the new level)."""

    at: int
    before: Segment
    after: Segment
    p: float

    @property
    def change(self) -> float:
        """Relative change of the level: +0.12 is 12 % higher."""
        return self.after.level / self.before.level - 1 if self.before.level else math.inf


def _noise(values: list[float]) -> float:
    """One run's noise (standard deviation), from consecutive differences (MAD / 0.6745 / √2)."""
    if len(values) < 3:
        return 0.0
    diffs = [b - a for a, b in zip(values, values[1:])]
    centre = median(diffs)
    mad = median(abs(d - centre) for d in diffs)
    return mad / 0.6745 / math.sqrt(2)


def _candidates(values: list[float]) -> list[int]:
    """Change points (first index of each new level) from PELT; none for a short series."""
    n = len(values)
    if n < 2 * MIN_RUNS:
        return []
    import numpy as np
    import ruptures

    signal = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    scale = max(abs(float(np.median(signal))), 1e-12)
    sigma = max(_noise(values), 1e-9 * scale)
    penalty = PENALTY * sigma ** 2 * math.log(n)
    ends = ruptures.Pelt(model="l2", min_size=MIN_RUNS, jump=1).fit(signal).predict(pen=penalty)
    return [e for e in ends if e < n]


def _p_value(before: list[float], after: list[float]) -> float:
    if not before or not after:
        return 1.0
    if min(before) == max(before) == min(after) == max(after):
        return 1.0
    if len(set(before)) == 1 and len(set(after)) == 1:  # two exact levels (a deterministic AP)
        from math import comb

        return 2.0 / comb(len(before) + len(after), len(before))
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(before, after, alternative="two-sided").pvalue)


def _segment(pools: list[list[float]], start: int, end: int) -> Segment:
    pool = tuple(v for p in pools[start:end] for v in p)
    return Segment(start, end, median(pool) if pool else math.nan, pool)


def segments(values: list[float], pools: list[list[float]], alpha: float = 0.01,
             log: bool = False) -> list[Segment]:
    """The levels of a series separated by significant steps (see the module docstring).
    ``pools[i]``: the samples behind ``values[i]``; ``log``: search relative changes."""
    if len(values) != len(pools):
        raise ValueError("one pool of samples per value")
    if not values:
        return []
    series = [math.log(v) for v in values] if log else list(values)
    cuts = _candidates(series)
    while True:
        bounds = [0, *cuts, len(values)]
        parts = [_segment(pools, a, b) for a, b in zip(bounds, bounds[1:])]
        ps = [_p_value(list(a.pool), list(b.pool)) for a, b in zip(parts, parts[1:])]
        weakest = max(range(len(ps)), key=lambda i: ps[i], default=None)
        if weakest is None or ps[weakest] < alpha:
            return parts
        del cuts[weakest]


def steps(parts: list[Segment], alpha: float = 0.01) -> list[Step]:
    """The steps between consecutive segments (each significant by construction)."""
    return [Step(b.start, a, b, _p_value(list(a.pool), list(b.pool)))
            for a, b in zip(parts, parts[1:])]
