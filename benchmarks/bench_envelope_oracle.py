"""Oracle ceilings of an envelope-correcting postfilter (issue 18): Zimtohrli per clip of
the codec output, of the codec's fine structure under the reference's band envelope at
several band counts and time resolutions (also with random level errors: how exact an
envelope must be), of the reference's fine structure under the codec's envelope, and of
the codec output with random level errors on its own envelope. Band envelope: mean power
per bin in ERB-spaced bands of each STFT frame (n_fft 1536, hop 384 = 8 ms), imposed by
per-band gains (clamped to ± 40 dB); coarser time resolution = power averaged over blocks
of frames (:mod:`flowdec.train.band_envelope`).
Prints a table per domain and writes JSON (bench_out/envelope_oracle.json).

    python benchmarks/bench_envelope_oracle.py /data/valclips3 [-b 6] [--cache DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from codec_outputs import decoded
from flowdec.evaluation.metrics import zimtohrli
from flowdec.train.band_envelope import impose
from results import save

VARIANTS: list[tuple[str, int, int, float]] = [  # name, bands, frames of 8 ms, jitter dB
    ("codec fine, reference envelope 64 bands / 8 ms", 64, 1, 0.0),
    ("codec fine, reference envelope 24 bands / 8 ms", 24, 1, 0.0),
    ("codec fine, reference envelope 64 bands / 80 ms", 64, 10, 0.0),
    ("codec fine, reference envelope 8 bands / 8 ms", 8, 1, 0.0),
    ("codec fine, reference envelope 64 bands / 8 ms ± 2 dB", 64, 1, 2.0),
    ("codec fine, reference envelope 64 bands / 8 ms ± 4 dB", 64, 1, 4.0),
    ("codec fine, reference envelope 64 bands / 8 ms ± 6 dB", 64, 1, 6.0),
]
JITTERED_CODEC = [("codec envelope 64 bands / 8 ms ± 2 dB", 2.0),
                  ("codec envelope 64 bands / 8 ms ± 4 dB", 4.0)]
REVERSE = "reference fine, codec envelope 64 bands / 8 ms"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", type=Path)
    p.add_argument("-b", "--bitrate", type=float, default=6.0)
    p.add_argument("--cache", type=Path, default=Path("bench_out/codec_outputs"),
                   help="folder for the decoded clips (reused)")
    p.add_argument("--out", type=Path, default=Path("bench_out/envelope_oracle.json"))
    args = p.parse_args()
    rows: list[tuple[str, str, dict[str, float]]] = []
    for name, domain, x, y in decoded(args.clips, args.bitrate, args.cache):
        scores = {"codec output": zimtohrli(x, y)}
        for label, bands, frames, jitter in VARIANTS:
            scores[label] = zimtohrli(x, impose(y, x, bands, frames, jitter_db=jitter))
        scores[REVERSE] = zimtohrli(x, impose(x, y, 64, 1))
        for label, jitter in JITTERED_CODEC:
            scores[label] = zimtohrli(x, impose(y, y, 64, 1, jitter_db=jitter))
        rows.append((name, domain, scores))
        print(name, " ".join(f"{v:.4f}" for v in scores.values()), flush=True)
    labels = list(rows[0][2])
    domains = sorted({r[1] for r in rows}) + ["all"]
    table: dict[str, dict[str, float]] = {}
    for lab in labels:
        table[lab] = {}
        for d in domains:
            v = [r[2][lab] for r in rows if d == "all" or r[1] == d]
            table[lab][d] = float(np.mean(v))
    print(f"\nZimtohrli (lower is better), mean per domain, {args.bitrate:g} kbit/s, "
          f"{len(rows)} clips")
    print(f"| signal | {' | '.join(domains)} |")
    print(f"|---|{'---|' * len(domains)}")
    for lab in labels:
        print(f"| {lab} | " + " | ".join(f"{table[lab][d]:.4f}" for d in domains) + " |")
    save(args.out, {"bitrate_kbps": args.bitrate, "clips": str(args.clips), "table": table,
                    "clips_zimtohrli": {r[0]: r[2] for r in rows}})


if __name__ == "__main__":
    main()
