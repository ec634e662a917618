"""Paired per-clip comparison of two systems scored on the same clips (pure numpy).

For per-clip scores ``a`` (system A) and ``b`` (system B) of one metric, on the same clips
in the same order, :func:`paired_comparison` reports

- ``mean_diff``: the mean of ``b − a`` over the clips (metric units; the sign is the
  metric's own: a negative mean is an improvement for a distance);
- ``ci_low``, ``ci_high``: a percentile bootstrap interval (default 95 %, 2000 resamples,
  seeded, so the same inputs always give the same interval) of that mean, clips resampled
  with replacement;
- ``better``, ``worse``: on how many clips B is strictly better / worse than A, in the
  metric's direction (``higher_is_better``); ``n``: clips where both scores are finite.

Clips where either score is missing (None or NaN, e.g. PESQ without speech) are left out.

Example:
    >>> r = paired_comparison([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 5.0, 3.0],
    ...                       higher_is_better=False)
    >>> r.n, r.mean_diff, r.better, r.worse
    (4, 0.5, 1, 2)
    >>> r.ci_low <= r.mean_diff <= r.ci_high
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metrics import HIGHER_IS_BETTER

RESAMPLES = 2000
"""Bootstrap resamples of the clips."""
LEVEL = 0.95
"""Coverage of the bootstrap interval."""
SEED = 0
"""Seed of the bootstrap's random generator (numpy ``default_rng``)."""
TABLE_NOTE = (f"Each cell: mean of B − A over the clips [bootstrap {LEVEL:.0%} interval, "
              f"{RESAMPLES} resamples] and the clips where B is better / clips scored "
              "(↓: lower is better, ↑: higher is better).")
"""The legend printed above the paired-comparison tables (Markdown and HTML)."""


@dataclass(frozen=True)
class Paired:
    """B compared with A on the same clips (see the module docstring)."""

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    better: int
    worse: int


def paired_comparison(a: Sequence[float | None], b: Sequence[float | None],
                      higher_is_better: bool, seed: int = SEED, resamples: int = RESAMPLES,
                      level: float = LEVEL) -> Paired | None:
    """Mean of ``b − a``, its bootstrap interval and "B better on k of n clips".

    ``None`` when no clip has both scores. With one clip the interval is that clip's
    difference. Deterministic for a given ``seed``.

    Example:
        >>> r = paired_comparison([3.0, 3.1], [3.2, 3.0], higher_is_better=True)
        >>> r.better, r.worse, r.n
        (1, 1, 2)
    """
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same clips, got {len(a)} and {len(b)}")
    if not 0.0 < level < 1.0 or resamples < 1:
        raise ValueError(f"need 0 < level < 1 and resamples >= 1, got {level}, {resamples}")
    pairs = [(float(x), float(y)) for x, y in zip(a, b, strict=True)
             if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    if not pairs:
        return None
    d = np.array([y - x for x, y in pairs])
    gain = d if higher_is_better else -d
    idx = np.random.default_rng(seed).integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return Paired(n=int(d.size), mean_diff=float(d.mean()), ci_low=float(lo), ci_high=float(hi),
                  better=int(np.sum(gain > 0)), worse=int(np.sum(gain < 0)))


def format_paired(entry: dict[str, float] | None) -> str:
    """One table cell: ``"-0.00383 [-0.00512, -0.00261] 24/24"`` (mean of B − A, the
    interval, clips where B is better / clips); ``"–"`` when there is nothing to compare."""
    if not entry:
        return "–"
    return (f"{entry['mean_diff']:+.3g} [{entry['ci_low']:+.3g}, {entry['ci_high']:+.3g}] "
            f"{int(entry['better'])}/{int(entry['n'])}")


def paired_rows(summary: dict[str, Any], domain: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the paired-comparison table of one domain of an eval summary
    (``summary["comparisons"]``): one row per compared pair, one cell per metric."""
    use = summary.get("paired", {}).get("metrics", [])
    head = ["B vs A", "what", *[f"{m} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in use]]
    rows = []
    for c in summary.get("comparisons", []):
        cells = c["domains"].get(domain, {})
        if not any(cells.get(m) for m in use):
            continue
        rows.append([f"{c['b']} vs {c['a']}", c["kind"],
                     *[format_paired(cells.get(m)) for m in use]])
    return head, rows
