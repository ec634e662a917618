"""The quality tables of docs/quality.md and the README, from ``flowdec eval`` output.

    flowdec eval valclips3 -b 3 6 --nfe --baselines opus --threads 1 --seed 0 --no-report \
        -o eval_quality
    python benchmarks/quality_tables.py eval_quality            # per domain (docs/quality.md)
    python benchmarks/quality_tables.py eval_quality --readme   # per bitrate (README)

Reads EVAL_DIR/summary.json (no audio, nothing recomputed) and prints markdown. Per domain:
one row per setting (the codec at each bitrate, Opus at each bitrate asked for, labelled with
the bitrate it really took), one column per metric. Per bitrate (``--readme``): ViSQOL /
Zimtohrli per domain, the codec at that bitrate against the Opus settings nearest it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# (summary key, column title, decimals); PESQ-WB and STOI only where a domain has them
METRICS = [("visqol", "ViSQOL ↑", 2), ("zimtohrli", "Zimtohrli ↓", 4),
           ("mel_distance", "mel distance ↓", 3), ("si_sdr", "SI-SDR ↑ (dB)", 1),
           ("pesq_wb", "PESQ-WB ↑", 2), ("stoi", "STOI ↑", 3), ("fad", "FAD ↓", 0)]
DOMAINS = ("music", "speech", "sound")


def label(setting: dict[str, Any]) -> str:
    b = setting["bitrate"]
    if setting["system"] == "opus":
        actual = setting["domains"].get("all", {}).get("actual_kbps")
        return f'Opus "{b:g}" ({actual:.1f} kbit/s)' if actual else f"Opus {b:g} kbit/s"
    name = setting["name"].replace("ndac", "flowdec")
    return f"{name} {b:g} kbit/s"


def cell(value: float | None, decimals: int) -> str:
    return "–" if value is None else f"{value:.{decimals}f}"


def domain_tables(summary: dict[str, Any], settings: list[dict[str, Any]]) -> str:
    out = []
    for dom in DOMAINS:
        rows = [s for s in settings if dom in s["domains"]]
        if not rows:
            continue
        cols = [m for m in METRICS if any(s["domains"][dom].get(m[0]) is not None for s in rows)]
        clips = rows[0]["domains"][dom]["clips"]
        out += [f"**{dom}** ({clips} clips)", "",
                "| setting | " + " | ".join(title for _, title, _ in cols) + " |",
                "|---" * (len(cols) + 1) + "|"]
        for s in rows:
            d = s["domains"][dom]
            out.append(f"| {label(s)} | "
                       + " | ".join(cell(d.get(k), n) for k, _, n in cols) + " |")
        out.append("")
    return "\n".join(out)


def bitrate_tables(settings: list[dict[str, Any]]) -> str:
    """ViSQOL / Zimtohrli per domain: each codec bitrate with the Opus settings from that
    bitrate up to (not including) the next codec bitrate (the last takes all above)."""
    codec = sorted((s for s in settings if s["system"] != "opus"), key=lambda s: s["bitrate"])
    opus = sorted((s for s in settings if s["system"] == "opus"), key=lambda s: s["bitrate"])
    out = []
    for i, c in enumerate(codec):
        top = codec[i + 1]["bitrate"] if i + 1 < len(codec) else float("inf")
        rows = [c] + [o for o in opus if c["bitrate"] <= o["bitrate"] < top]
        doms = [d for d in DOMAINS if d in c["domains"]]
        out += [f"| {c['bitrate']:g} kbit/s — ViSQOL ↑ / Zimtohrli ↓ | " + " | ".join(doms)
                + " |", "|---" * (len(doms) + 1) + "|"]
        for s in rows:
            out.append(f"| {label(s)} | " + " | ".join(
                f"{cell(s['domains'].get(d, {}).get('visqol'), 2)} / "
                f"{cell(s['domains'].get(d, {}).get('zimtohrli'), 4)}" for d in doms) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("eval_dir", type=Path, nargs="+", help="flowdec eval output folder(s)")
    p.add_argument("--readme", action="store_true", help="the README's per-bitrate tables")
    p.add_argument("--settings", nargs="*", default=["ndac", "opus"],
                   help="setting names to show (default: ndac opus)")
    args = p.parse_args(argv)
    for folder in args.eval_dir:
        path = folder / "summary.json"
        if not path.is_file():
            raise SystemExit(f"{path} not found: give a flowdec eval output folder")
        summary = json.loads(path.read_text())
        settings = [s for s in summary["settings"] if s["name"] in args.settings]
        if not settings:
            raise SystemExit(f"{path} has none of the settings {args.settings}")
        print(bitrate_tables(settings) if args.readme else domain_tables(summary, settings))


if __name__ == "__main__":
    main()
