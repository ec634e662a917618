"""How many training steps fit in a time budget, from a short probe run's pace.

scripts/gpu_train_postfilter.sh trains in two runs: a probe of a few steps, then the rest,
whose length (and so the end of its cosine schedule) this plans. The arithmetic takes the
probe's duration as a number, so it is tested with made-up times; the script passes the
seconds it measured.

    python -m flowdec.train.pace --train-seconds 420 --probe-seconds 35 --probe-steps 200 \\
        --log RUN/train.csv          # prints: steps left_seconds steps_per_second max_minutes

Example:
    >>> p = plan(420, 35, 200, [{"step": 25, "wall_s": 5.0}, {"step": 200, "wall_s": 30.0}])
    >>> p.rate, p.left_s, p.steps
    (7.0, 350.0, 2450)
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class NoTimeLeft(ValueError):
    """The probe took so long that no time is left for the second run."""


@dataclass(frozen=True)
class Plan:
    """The second run: ``steps`` steps in ``left_s`` seconds at ``rate`` steps/s, stopped
    after ``max_minutes`` (None: no time limit, the steps were given)."""

    rate: float
    left_s: float
    steps: int
    max_minutes: float | None


def plan(train_seconds: float, probe_seconds: float, probe_steps: int,
         log_rows: Sequence[Mapping[str, str | float | int]],
         steps: int | None = None) -> Plan:
    """Plan the second run of a ``train_seconds`` budget after a probe of ``probe_steps``
    steps that took ``probe_seconds`` (start-up included).

    The second run has the budget less twice the probe's time (its own start-up, the
    validations and saving). The pace comes from the probe's log rows (``step`` and ``wall_s``
    every 25 steps, start-up excluded), or from ``probe_steps / probe_seconds`` when the log
    has fewer than two rows. ``steps`` given: that many, with no time limit.

    Raises :class:`NoTimeLeft` when the plan has no step."""
    left = float(train_seconds - 2 * probe_seconds)
    rate = 0.0
    if len(log_rows) > 1:
        first, last = log_rows[0], log_rows[-1]
        dt = float(last["wall_s"]) - float(first["wall_s"])
        if dt > 0:
            rate = (int(last["step"]) - int(first["step"])) / dt
    if rate <= 0:
        rate = probe_steps / max(probe_seconds, 1.0)
    if steps is not None:
        return Plan(rate, left, steps, None)
    n = int(rate * left)
    if n <= 0:
        raise NoTimeLeft(f"no time left after the probe ({probe_seconds:g} s of "
                         f"{train_seconds:g} s)")
    return Plan(rate, left, n, max((left + 30) / 60, 0.5))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-seconds", type=float, required=True)
    ap.add_argument("--probe-seconds", type=float, required=True)
    ap.add_argument("--probe-steps", type=int, required=True)
    ap.add_argument("--log", type=Path, required=True, help="the probe's train.csv")
    ap.add_argument("--steps", type=int, default=None,
                    help="the second run's steps (default: as many as fit)")
    a = ap.parse_args(argv)
    rows = []
    if a.log.exists():
        with a.log.open() as f:
            rows = list(csv.DictReader(f))
    try:
        p = plan(a.train_seconds, a.probe_seconds, a.probe_steps, rows, a.steps)
    except NoTimeLeft as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    max_minutes = "-" if p.max_minutes is None else f"{p.max_minutes:.3f}"
    print(p.steps, f"{p.left_s:g}", f"{p.rate:.3f}", max_minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
