"""Sound of the live postfilter settings: what a short chunk, a short window context and
fewer network evaluations cost against the offline postfilter and the codec alone.

Runs every clip of a folder (48 kHz, mono mix, at most ``--seconds``) through
:class:`flowdec.Stream` (``worker=False``, so the output is the engine's whole output with its
latency removed) for each live setting, and through :meth:`flowdec.Codec.roundtrip` (the
offline postfilter, NFE 6, the file path's window context), and scores each against the
reference with Zimtohrli (lower is better) and mel distance; prints paired differences
(bootstrap 95 % interval, "better on k of n clips") against the codec path and against the
offline postfilter, per domain and overall; writes ``bench_out/live_quality.json``.

    python benchmarks/bench_live_quality.py CLIP_DIR [--bitrate 6] [--seconds 5]
        [--settings 40:2:2 40:2:6 160:4:6]     # chunk ms : context frames : NFE
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from flowdec.codec import Codec
from flowdec.evaluation import metrics
from flowdec.evaluation.paired import format_paired, paired_comparison
from flowdec.evaluation.runner import domain_of, list_clips, load_clip
from flowdec.format.bitstream import LIVE_FRAMES_PER_GAIN
from flowdec.stream import Stream
from results import save

RATE = 48000


def stream_output(codec: Codec, x: np.ndarray, bitrate: float, postfilter: bool,
                  chunk_ms: float | None = None, context: int = 2, nfe: int = 6) -> np.ndarray:
    """The stream's output for mono ``x`` [n], latency removed (input padded to flush)."""
    s = Stream(codec, bitrate=bitrate, postfilter=postfilter, chunk_ms=chunk_ms,
               worker=False, degrade=False, nfe=nfe if postfilter else None, context=context)
    block = 1024
    s.prepare(RATE, block, 1)
    lat = s.latency_samples
    padded = np.concatenate([x, np.zeros(lat + block, np.float32)])
    out = [s.process(padded[None, i : i + block]) for i in range(0, padded.size, block)]
    return np.concatenate(out, axis=1)[0, lat : lat + x.size]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips")
    ap.add_argument("--bitrate", type=float, default=6.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--settings", nargs="+", default=["40:2:2", "40:2:6", "160:4:6"],
                    help="live postfilter settings, chunk_ms:context:nfe")
    ap.add_argument("--out", default="bench_out/live_quality.json")
    a = ap.parse_args()
    codec = Codec(threads=1)
    clips = [load_clip(p, a.seconds, domain_of(p.stem)) for p in list_clips(a.clips)]
    names = ["codec", "offline NFE 6"] + [f"live {s}" for s in a.settings]
    scores: dict[str, dict[str, list[float]]] = {n: {"zimtohrli": [], "mel": []} for n in names}
    t0 = time.perf_counter()
    for i, clip in enumerate(clips):
        x = clip.audio.mean(axis=0).astype(np.float32)  # load_clip gives [C, n] at 48 kHz
        outs = {"codec": stream_output(codec, x, a.bitrate, False),
                "offline NFE 6": codec.roundtrip(x, RATE, a.bitrate, nfe=6, seed=0,
                                                 postfilter=True,
                                                 frames_per_gain=LIVE_FRAMES_PER_GAIN)}
        for spec in a.settings:
            ms, ctx, nfe = (float(v) for v in spec.split(":"))
            outs[f"live {spec}"] = stream_output(codec, x, a.bitrate, True, ms, int(ctx),
                                                 int(nfe))
        for n, y in outs.items():
            scores[n]["zimtohrli"].append(metrics.zimtohrli(x, y))
            scores[n]["mel"].append(metrics.mel_distance(x, y))
        print(f"[{i + 1}/{len(clips)}] {clip.path.name} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    domains = [c.domain for c in clips]
    result: dict[str, object] = {"bitrate": a.bitrate, "seconds": a.seconds,
                                 "clips": [c.path.name for c in clips], "scores": scores,
                                 "paired": {}}
    paired: dict[str, dict[str, float]] = {}
    for base in ("codec", "offline NFE 6"):
        for n in names:
            if n == base or n == "codec":
                continue
            for metric in ("zimtohrli", "mel"):
                for dom in sorted(set(domains)) + ["all"]:
                    idx = [j for j, d in enumerate(domains) if dom in ("all", d)]
                    r = paired_comparison([scores[base][metric][j] for j in idx],
                                          [scores[n][metric][j] for j in idx],
                                          higher_is_better=False)
                    paired[f"{n} vs {base} | {metric} | {dom}"] = r.__dict__ if r else {}
    result["paired"] = paired
    print("\nmean per setting (Zimtohrli / mel):")
    for n in names:
        print(f"  {n:16s} {np.mean(scores[n]['zimtohrli']):.5f} / "
              f"{np.mean(scores[n]['mel']):.4f}")
    print("\npaired differences (B − A, 95 % interval, B better on k of n clips):")
    for key, entry in paired.items():
        print(f"  {key}: {format_paired(entry)}")
    save(a.out, result)


if __name__ == "__main__":
    main()
