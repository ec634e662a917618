"""A training-free envelope correction, as a baseline for the envelope flow (issue 18): the
codec output's band levels pushed away from their own moving average over time (the codec
blurs its envelope in time: its levels move about 0.75 × as much from frame to frame as
the clean ones on the pair cache), ``L + k·(L − mean_w(L))`` per band, as per-band gains on
its STFT (64 ERB bands, 8 ms frames, :mod:`flowdec.train.band_envelope`). Zimtohrli against
the plain codec per clip; prints the mean difference and on how many clips it is better,
writes JSON (bench_out/envelope_sharpen.json).

    python benchmarks/bench_envelope_sharpen.py /data/valclips3 [-b 6] [--cache DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter1d

from codec_outputs import decoded
from flowdec.evaluation.metrics import zimtohrli
from flowdec.train import band_envelope as be
from results import save

SETTINGS = [(5, 0.25), (5, 0.5), (15, 0.25), (15, 0.5)]  # (frames of 8 ms, k)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", type=Path)
    p.add_argument("-b", "--bitrate", type=float, default=6.0)
    p.add_argument("--cache", type=Path, default=Path("bench_out/codec_outputs"))
    p.add_argument("--out", type=Path, default=Path("bench_out/envelope_sharpen.json"))
    args = p.parse_args()
    e = be.edges_for(64)
    scores: dict[str, dict[str, float]] = {}
    for name, _, x, y in decoded(args.clips, args.bitrate, args.cache):
        S = be.spectrum(y)
        L = be.level_db(be.band_power(S, e)).astype(np.float64)
        r = {"codec": zimtohrli(x, y)}
        for w, k in SETTINGS:
            gain = k * (L - uniform_filter1d(L, w, axis=-1, mode="nearest"))
            r[f"w{w} k{k}"] = zimtohrli(x, be.synthesise(be.apply_gains(S, gain, e, 24.0),
                                                         len(y))[0])
        scores[name] = r
    print(f"Zimtohrli, sharpened − codec, {args.bitrate:g} kbit/s, {len(scores)} clips")
    summary = {}
    for w, k in SETTINGS:
        d = np.array([s[f"w{w} k{k}"] - s["codec"] for s in scores.values()])
        summary[f"w{w} k{k}"] = {"mean_diff": float(d.mean()), "better": int((d < 0).sum())}
        print(f"window {w} frames, k {k}: {d.mean():+.5f}, better on {(d < 0).sum()}/{len(d)}")
    save(args.out, {"bitrate_kbps": args.bitrate, "summary": summary, "clips": scores})


if __name__ == "__main__":
    main()
