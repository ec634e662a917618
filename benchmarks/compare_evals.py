"""Two ``flowdec eval`` runs on the same clips (e.g. two models), compared clip by clip.

For one setting of each run (default: the codec path, ``ndac``, at 6 kbit/s in both),
per domain and metric: the mean paired difference B − A with its bootstrap 95 % interval
and on how many clips B is better (:func:`flowdec.evaluation.paired.paired_comparison`).

    flowdec eval CLIPS -b 6 --nfe --model OLD -o eval_a
    flowdec eval CLIPS -b 6 --nfe --model NEW -o eval_b
    python benchmarks/compare_evals.py eval_a eval_b [--a-setting ndac --b-setting ndac]
        [--bitrate 6] [--a-bitrate 12] [--out bench_out/compare_evals.json]

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Any

from flowdec.evaluation.metrics import HIGHER_IS_BETTER
from flowdec.evaluation.paired import paired_comparison
from results import save

NOT_METRICS = {"clip", "domain", "setting", "system", "bitrate_kbps", "actual_kbps", "nfe",
               "solver", "sigma", "envelope", "seconds", "rtf"}


def load(folder: Path, setting: str, bitrate: float) -> dict[str, dict[str, Any]]:
    """Rows of ``folder/clips.csv`` for one setting and bitrate, by clip name."""
    with open(folder / "clips.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["setting"] == setting
                and math.isclose(float(r["bitrate_kbps"]), bitrate)]
    if not rows:
        raise SystemExit(f"{folder}/clips.csv has no rows for {setting} at {bitrate:g} kbit/s")
    return {r["clip"]: r for r in rows}


def number(v: str | None) -> float | None:
    try:
        x = float(v) if v not in (None, "") else None
    except ValueError:
        return None
    return x if x is not None and math.isfinite(x) else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="eval output folder of system A")
    p.add_argument("b", type=Path, help="eval output folder of system B")
    p.add_argument("--a-setting", default="ndac")
    p.add_argument("--b-setting", default=None, help="default: --a-setting")
    p.add_argument("--bitrate", type=float, default=6.0, help="kbit/s asked for (both)")
    p.add_argument("--a-bitrate", type=float, help="A's, when it differs (e.g. Opus at 12)")
    p.add_argument("--out", default="bench_out/compare_evals.json")
    args = p.parse_args()
    a = load(args.a, args.a_setting, args.a_bitrate or args.bitrate)
    b = load(args.b, args.b_setting or args.a_setting, args.bitrate)
    clips = sorted(set(a) & set(b))
    if len(clips) < len(set(a) | set(b)):
        print(f"note: {len(set(a) ^ set(b))} clips are in only one run; compared on the "
              f"{len(clips)} in both")
    metrics = [m for m in next(iter(a.values())) if m not in NOT_METRICS and m in HIGHER_IS_BETTER]
    domains = sorted({a[c]["domain"] for c in clips})
    results: list[dict[str, Any]] = []
    print(f"B ({args.b}, {args.b_setting or args.a_setting} {args.bitrate:g}) − A ({args.a}, "
          f"{args.a_setting} {args.a_bitrate or args.bitrate:g} kbit/s); "
          "interval: bootstrap 95 %")
    print(f"{'domain':<7} {'metric':<13} {'A':>8} {'B':>8} {'B − A':>9} {'interval':>21} "
          f"{'B better':>9}")
    for dom in [*domains, "all"]:
        names = [c for c in clips if dom == "all" or a[c]["domain"] == dom]
        for m in metrics:
            xa = [number(a[c].get(m)) for c in names]
            xb = [number(b[c].get(m)) for c in names]
            r = paired_comparison(xa, xb, higher_is_better=HIGHER_IS_BETTER[m])
            if r is None or r.n == 0:
                continue
            pairs = [(x, y) for x, y in zip(xa, xb, strict=True)
                     if x is not None and y is not None]
            mean_a = sum(x for x, _ in pairs) / r.n
            mean_b = sum(y for _, y in pairs) / r.n
            results.append({"domain": dom, "metric": m, "a": mean_a, "b": mean_b,
                            "mean_diff": r.mean_diff, "ci_low": r.ci_low, "ci_high": r.ci_high,
                            "better": r.better, "worse": r.worse, "n": r.n})
            print(f"{dom:<7} {m:<13} {mean_a:8.4g} {mean_b:8.4g} {r.mean_diff:+9.4f} "
                  f"[{r.ci_low:+9.4f}, {r.ci_high:+9.4f}] {r.better:>4}/{r.n:<4}")
    save(args.out, {"a": str(args.a), "b": str(args.b), "a_setting": args.a_setting,
                    "a_bitrate": args.a_bitrate or args.bitrate,
                    "b_setting": args.b_setting or args.a_setting, "bitrate": args.bitrate,
                    "rows": results})


if __name__ == "__main__":
    main()
