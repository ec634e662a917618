"""Does the postfilter stop hurting when it moves the codec output less? Two knobs, offline
at NFE 6: the prior noise scaled down (σ_y(f) × s: the flow starts closer to the codec
output) and a partial blend of its output with the codec output (codec + λ·(postfilter −
codec)). Zimtohrli (↓) per clip against the codec path, paired (bootstrap 95 % interval,
better on k of n clips); writes bench_out/postfilter_prior.json.

    python benchmarks/bench_postfilter_prior.py CLIP_DIR [--bitrate 6] [--seconds 5]
        [--scales 1 0.5 0.25] [--blends 0.5 0.25] [--model DIR]
"""

from __future__ import annotations

import argparse

import numpy as np

from flowdec.codec import Codec
from flowdec.evaluation import metrics
from flowdec.evaluation.paired import format_paired, paired_comparison
from flowdec.evaluation.runner import domain_of, list_clips, load_clip
from flowdec.pipeline import postfilter
from results import save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips")
    ap.add_argument("--bitrate", type=float, default=6.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    ap.add_argument("--blends", type=float, nargs="+", default=[0.5, 0.25])
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    codec = Codec(a.model, threads=1)
    scale = [1.0]
    init = postfilter.PostfilterSolve.__init__

    def scaled_init(self: postfilter.PostfilterSolve, *args: object, **kw: object) -> None:
        init(self, *args, **kw)  # type: ignore[arg-type]
        self.sigma_y = (self.sigma_y * scale[0]).astype(np.float32)

    postfilter.PostfilterSolve.__init__ = scaled_init  # type: ignore[method-assign]
    clips = [load_clip(p, a.seconds, domain_of(p.stem)) for p in list_clips(a.clips)]
    scores: dict[str, list[float]] = {}
    for i, clip in enumerate(clips):
        x = clip.audio.mean(axis=0).astype(np.float32)
        enc = codec.encode(x, 48000, a.bitrate)
        base = codec.decode(enc, postfilter=False).reshape(-1)
        outs = {"codec": base}
        for s in a.scales:
            scale[0] = s
            y = codec.decode(enc, nfe=6, seed=0, postfilter=True).reshape(-1)
            outs[f"sigma x{s:g}"] = y
            if s == 1.0:
                for lam in a.blends:
                    outs[f"blend {lam:g}"] = base + lam * (y - base)
        for name, y in outs.items():
            scores.setdefault(name, []).append(metrics.zimtohrli(x, y))
        print(f"[{i + 1}/{len(clips)}] {clip.path.name}", flush=True)
    paired = {}
    for name, v in scores.items():
        if name != "codec":
            r = paired_comparison(scores["codec"], v, higher_is_better=False)
            paired[name] = r.__dict__ if r else {}
            print(f"{name}: Zimtohrli {np.mean(v):.5f} vs codec {np.mean(scores['codec']):.5f}"
                  f", {format_paired(paired[name])}")
    save("bench_out/postfilter_prior.json", {"clips": [c.path.name for c in clips],
                                             "bitrate": a.bitrate, "scores": scores,
                                             "paired": paired})


if __name__ == "__main__":
    main()
