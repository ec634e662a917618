"""The envelope flow (issue 18) against the plain codec, clip by clip: the codec output with
band gains from a sampled envelope (``flowdec.train.envelope_flow.postfilter_signal``) vs
the codec output, scored with Zimtohrli, ViSQOL, mel distance, SI-SDR (and FAD per domain
with ``--fad``); per domain the mean difference, its bootstrap 95 % interval and "better on
k of n" (``flowdec.evaluation.paired``). Prints Markdown tables, writes JSON, and with
``--plot`` spectrograms of the first clip of each domain (reference, codec, each variant).

    python benchmarks/eval_envelope_flow.py /data/valclips3 --run runs/envelope_flow \
        [-b 6] [--variant nfe6 --variant nfe6,euler --variant nfe6,temp0.5] [--shipped]

A variant is ``nfeN[,euler|,midpoint][,tempT][,seedS]``. ``--shipped`` adds the shipped
spectral postfilter at NFE 6 (``flowdec decode --postfilter --nfe 6``) as another variant.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec_outputs import decoded
from flowdec.codec import Codec
from flowdec.evaluation import metrics as M
from flowdec.evaluation.paired import paired_comparison
from flowdec.train.envelope_flow import EnvelopeFlowConfig, EnvelopeFlowNet, postfilter_signal
from results import save

METRICS = ("zimtohrli", "visqol", "mel_distance", "si_sdr")


def load_net(run: Path) -> tuple[EnvelopeFlowNet, torch.Tensor, int]:
    s = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    c = s["config"]["net"]
    net = EnvelopeFlowNet(EnvelopeFlowConfig(**{**c, "dilations": tuple(c["dilations"])}))
    net.load_state_dict(s["ema"])
    net.eval()
    return net, torch.tensor(c["sigma"], dtype=torch.float32), int(s["step"])


def parse_variant(v: str) -> dict[str, Any]:
    out: dict[str, Any] = {"nfe": 6, "solver": "midpoint", "temperature": 1.0, "seed": 0}
    for part in v.split(","):
        if part.startswith("nfe"):
            out["nfe"] = int(part[3:])
        elif part in ("euler", "midpoint"):
            out["solver"] = part
        elif part.startswith("temp"):
            out["temperature"] = float(part[4:])
        elif part.startswith("seed"):
            out["seed"] = int(part[4:])
        else:
            raise SystemExit(f"variant {v!r}: parts are nfeN, euler|midpoint, tempT, seedS")
    return out


def plot(path: Path, signals: dict[str, np.ndarray], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(signals), 1, figsize=(10, 2.2 * len(signals)), sharex=True)
    for ax, (name, x) in zip(axes, signals.items(), strict=True):
        ax.specgram(x, NFFT=1536, Fs=48000, noverlap=1152, vmin=-140, vmax=-20, cmap="magma")
        ax.set_ylabel("Hz")
        ax.set_title(name, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", type=Path)
    p.add_argument("--run", type=Path, required=True, help="envelope flow run folder")
    p.add_argument("-b", "--bitrate", type=float, default=6.0)
    p.add_argument("--variant", action="append", help="(repeatable) default nfe6")
    p.add_argument("--shipped", action="store_true", help="also the shipped postfilter, NFE 6")
    p.add_argument("--fad", action="store_true", help="also FAD (aiSFX) per domain")
    p.add_argument("--metrics", nargs="+", default=list(METRICS), choices=METRICS,
                   help="per-clip metrics (default all four; zimtohrli alone screens fast)")
    p.add_argument("--max-gain-db", type=float, default=24.0)
    p.add_argument("--cache", type=Path, default=Path("bench_out/codec_outputs"))
    p.add_argument("--plot", type=Path, help="folder for spectrogram PNGs")
    p.add_argument("--out", type=Path, default=Path("bench_out/envelope_flow_eval.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    net, sigma, step = load_net(args.run)
    variants = {v: parse_variant(v) for v in (args.variant or ["nfe6"])}
    names = ["codec", *variants] + (["shipped postfilter nfe6"] if args.shipped else [])
    use = [m for m in args.metrics if M.available(m)] + (["fad"] if args.fad else [])
    codec = Codec(threads=1) if args.shipped else None
    rows: list[dict[str, Any]] = []
    emb: dict[str, dict[str, list[np.ndarray]]] = {n: {} for n in ["reference", *names]}
    seconds = {n: 0.0 for n in names}
    plotted: set[str] = set()
    audio_s = 0.0
    for clip, domain, x, y in decoded(args.clips, args.bitrate, args.cache):
        outs = {"codec": y}
        audio_s += len(x) / 48000
        for v, kw in variants.items():
            t0 = time.perf_counter()
            outs[v] = postfilter_signal(net, y, sigma, max_gain_db=args.max_gain_db, **kw)
            seconds[v] += time.perf_counter() - t0
        if codec is not None:
            stream = codec.encode(x, 48000, args.bitrate)
            outs["shipped postfilter nfe6"] = np.asarray(
                codec.decode(stream, nfe=6, seed=0, postfilter=True), np.float32
            ).reshape(-1)[: len(x)]
        for n, sig in outs.items():
            rows.append({"clip": clip, "domain": domain, "setting": n,
                         **M.score(x, sig, use, domain == "speech")})
            if args.fad:
                emb[n].setdefault(domain, []).append(M.aisfx_embeddings(sig))
        if args.fad:
            emb["reference"].setdefault(domain, []).append(M.aisfx_embeddings(x))
        if args.plot and domain not in plotted:
            plotted.add(domain)
            plot(args.plot / f"{clip}_{args.bitrate:g}k.png", {"reference": x, **outs},
                 f"{clip}, {args.bitrate:g} kbit/s, envelope flow step {step}")
        print(clip, " ".join(f"{r['setting']}:{r.get('zimtohrli', float('nan')):.4f}"
                             for r in rows if r["clip"] == clip), flush=True)
    domains = sorted({r["domain"] for r in rows}) + ["all"]
    comparisons: dict[str, dict[str, dict[str, Any]]] = {}
    for n in names[1:]:
        comparisons[n] = {}
        for d in domains:
            comparisons[n][d] = {}
            for m in [m for m in use if m != "fad"]:
                def col(s: str, m: str = m, d: str = d) -> list[float | None]:
                    return [r.get(m) for r in rows if r["setting"] == s
                            and (d == "all" or r["domain"] == d)]
                c = paired_comparison(col("codec"), col(n), M.HIGHER_IS_BETTER[m])
                comparisons[n][d][m] = None if c is None else c.__dict__
    fad: dict[str, dict[str, float]] = {}
    if args.fad:
        for n in names:
            fad[n] = {}
            for d in domains:
                ds = [d] if d != "all" else domains[:-1]
                a = np.concatenate([e for dd in ds for e in emb["reference"][dd]])
                b = np.concatenate([e for dd in ds for e in emb[n][dd]])
                fad[n][d] = M.frechet_distance(a, b)
    print(f"\nstep {step}, {args.bitrate:g} kbit/s: B − codec per domain "
          "(mean [95 % CI] better/n)")
    for n in names[1:]:
        print(f"\n{n}")
        print(f"| domain | {' | '.join(m for m in use if m != 'fad')} |"
              + (" FAD codec → B |" if args.fad else ""))
        print("|---|" + "---|" * len([m for m in use if m != "fad"]) + ("---|" if args.fad else ""))
        for d in domains:
            cells = []
            for m in [m for m in use if m != "fad"]:
                c = comparisons[n][d][m]
                cells.append("–" if c is None else f"{c['mean_diff']:+.4f} [{c['ci_low']:+.4f}, "
                             f"{c['ci_high']:+.4f}] {c['better']}/{c['n']}")
            if args.fad:
                cells.append(f"{fad['codec'][d]:.1f} → {fad[n][d]:.1f}")
            print(f"| {d} | " + " | ".join(cells) + " |")
    save(args.out, {"run": str(args.run), "step": step, "bitrate_kbps": args.bitrate,
                    "variants": variants, "max_gain_db": args.max_gain_db, "rows": rows,
                    "comparisons": comparisons, "fad": fad,
                    "rtf_one_thread": {n: seconds[n] / audio_s for n in variants}})


if __name__ == "__main__":
    main()
