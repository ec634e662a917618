"""Where the postfilter loses against the codec output: in which frequencies, and whether
without the envelope stage or as a one-step estimate of the mean. Zimtohrli (↓) per clip
against the codec path, paired (bootstrap 95 % interval, better on k of n clips), per domain;
writes bench_out/postfilter_where.json.

Variants, all on the same codec output (6 kbit/s unless ``--bitrate``), seed 0:
- ``card``: the postfilter as shipped (midpoint NFE 6, envelope stage as the card sets it);
- ``keep N``: the envelope stage keeps the codec output's own bins below N Hz (the card's
  ``keep_below_hz``), so the postfilter only acts above N;
- ``no envelope``: the solver's output as it is;
- ``euler 6``, ``midpoint 12``: other solvers and step counts, envelope stage on;
- ``euler 1``: one Euler step from the prior, i.e. the network's estimate of E[clean | codec
  output] (with and without the envelope stage).

    python benchmarks/bench_postfilter_where.py CLIP_DIR [--seconds 3] [--bitrate 6]
        [--keep-below 3000 6000 9000 12000 16000] [--model DIR] [--postfilter-model DIR]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from flowdec.codec import Codec
from flowdec.evaluation import metrics
from flowdec.evaluation.paired import format_paired, paired_comparison
from flowdec.evaluation.runner import domain_of, list_clips, load_clip
from flowdec.model.files import PostfilterCard
from flowdec.pipeline.chain import DecodeChain
from flowdec.pipeline.postfilter import postfilter_stage
from flowdec.postfilter import CHUNK_FRAMES, Postfilter
from results import save


def enhance(pf: Postfilter, card: PostfilterCard, y: np.ndarray, nfe: int, solver: str,
            envelope: bool) -> np.ndarray:
    """``pf.enhance`` on 48 kHz mono ``y`` with another card (its envelope settings)."""
    chain = DecodeChain(1, post=postfilter_stage(pf.net, card, pf.device, 1, CHUNK_FRAMES,
                                                 nfe, 0, solver, envelope=envelope))
    out: np.ndarray = np.concatenate([chain.push(y[None]), chain.finish()], axis=1)[0]
    return out[: y.shape[0]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips")
    ap.add_argument("--bitrate", type=float, default=6.0)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--keep-below", type=float, nargs="*",
                    default=[3000.0, 6000.0, 9000.0, 12000.0, 16000.0])
    ap.add_argument("--model", default=None, help="the codec's model folder")
    ap.add_argument("--postfilter-model", default=None,
                    help="model folder of the postfilter (default: --model)")
    a = ap.parse_args()
    codec = Codec(a.model, threads=1)
    pf = Postfilter(a.postfilter_model or a.model, threads=1)
    card = pf.card
    variants: dict[str, tuple[PostfilterCard, int, str, bool]] = {
        "card": (card, 6, "midpoint", True)}
    if card.envelope is not None:
        for hz in a.keep_below:
            kept = dataclasses.replace(card, envelope=dataclasses.replace(card.envelope,
                                                                          keep_below_hz=hz))
            variants[f"keep {hz:g} Hz"] = (kept, 6, "midpoint", True)
        variants["no envelope"] = (card, 6, "midpoint", False)
        variants["euler 6"] = (card, 6, "euler", True)
        variants["midpoint 12"] = (card, 12, "midpoint", True)
        variants["euler 1, envelope"] = (card, 1, "euler", True)
    variants["euler 1"] = (card, 1, "euler", False)

    clips = [load_clip(p, a.seconds, domain_of(p.stem)) for p in list_clips(a.clips)]
    domains = [domain_of(c.path.stem) for c in clips]
    scores: dict[str, list[float]] = {"codec": []}
    for i, clip in enumerate(clips):
        x = clip.audio.mean(axis=0).astype(np.float32)
        y = codec.decode(codec.encode(x, 48000, a.bitrate), postfilter=False).reshape(-1)
        scores["codec"].append(metrics.zimtohrli(x, y))
        for name, (c, nfe, solver, env) in variants.items():
            scores.setdefault(name, []).append(metrics.zimtohrli(x, enhance(pf, c, y, nfe,
                                                                            solver, env)))
        print(f"[{i + 1}/{len(clips)}] {clip.path.name}", flush=True)

    base = np.array(scores["codec"])
    paired: dict[str, dict[str, dict[str, float]]] = {}
    print(f"\n| variant | Zimtohrli ↓ | against the codec path (better on) | "
          f"{' | '.join(sorted(set(domains)))} |")
    print("|---|---|---|" + "---|" * len(set(domains)))
    print(f"| codec path | {base.mean():.5f} | | " + " | " * (len(set(domains)) - 1) + " |")
    for name, v in scores.items():
        if name == "codec":
            continue
        r = paired_comparison(scores["codec"], v, higher_is_better=False)
        per = {}
        for dom in sorted(set(domains)):
            m = np.array([d == dom for d in domains])
            per[dom] = float(np.mean(np.array(v)[m] - base[m]))
        paired[name] = {"paired": dict(r.__dict__) if r else {}, "per_domain": per}
        cells = " | ".join(f"{per[d]:+.5f}" for d in sorted(per))
        print(f"| {name} | {np.mean(v):.5f} | {format_paired(paired[name]['paired'])} | {cells} |")
    save("bench_out/postfilter_where.json", {"clips": [c.path.name for c in clips],
                                             "domains": domains, "bitrate": a.bitrate,
                                             "seconds": a.seconds, "scores": scores,
                                             "paired": paired})


if __name__ == "__main__":
    main()
