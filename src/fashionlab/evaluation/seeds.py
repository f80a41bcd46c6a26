"""Statistics across seeds: how far a mean over a few training runs can be trusted, and whether
two models differ beyond the spread that retraining alone produces.

A test set's McNemar test says whether two trained networks differ on those items; it says
nothing about a second training run. These treat each seed as one sample of the training
process: a t interval for a mean, and for seed-matched pairs a paired t-test and a sign test
(the sign test assumes nothing about the spread, but with n seeds its smallest two-sided
p-value is 2 / 2**n, so it cannot reach 0.05 below 6 seeds)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class SeedInterval:
    mean: float
    std: float  # sample standard deviation (ddof 1); 0 for one seed
    n: int
    low: float  # the 95% t interval of the mean; equal to the mean for one seed
    high: float


@dataclass(frozen=True)
class PairedSeeds:
    """a - b over seed-matched pairs."""

    difference: SeedInterval
    t_p_value: float | None  # paired t-test, two-sided; None below 2 pairs or with no spread
    sign_p_value: float  # exact sign test, two-sided (ties dropped)
    wins: int  # pairs where a > b
    losses: int  # pairs where a < b


def seed_interval(values: Sequence[float], level: float = 0.95) -> SeedInterval:
    """Mean, sample std and the `level` t interval of the mean of per-seed values."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError("seed_interval needs one or more finite values")
    mean = float(arr.mean())
    if arr.size == 1:
        return SeedInterval(mean, 0.0, 1, mean, mean)
    std = float(arr.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, df=arr.size - 1)) * std / math.sqrt(arr.size)
    return SeedInterval(mean, std, int(arr.size), mean - half, mean + half)


def paired_seeds(a: Sequence[float], b: Sequence[float]) -> PairedSeeds:
    """Paired comparison of seed-matched values (`a[i]` and `b[i]` share a seed)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"paired_seeds needs two equally long lists, got {x.shape} and {y.shape}")
    diff = x - y
    wins, losses = int(np.sum(diff > 0)), int(np.sum(diff < 0))
    sign = 1.0 if wins + losses == 0 else float(stats.binomtest(wins, wins + losses).pvalue)
    t_p = None
    if diff.size >= 2 and np.ptp(diff) > 0:
        t_p = float(stats.ttest_rel(x, y).pvalue)
    return PairedSeeds(seed_interval(diff), t_p, sign, wins, losses)
