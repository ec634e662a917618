"""What per-band level side information would buy: the codec output with each ERB band's
energy per block set to the clean input's (as an encoder could measure and send), quantised,
against the codec output as shipped (broadband level gains only). Prints ViSQOL and mel
distance per domain and the side information's cost, and writes JSON
(bench_out/band_levels.json).

    python benchmarks/bench_band_levels.py CLIP_DIR [-b 6] [--bands 8 16] [--block-seconds 0.5]
        [--step-db 1.5] [--nfe 0] [--max-seconds 3]

CLIP_DIR holds ``<domain>_<n>.wav`` clips (``python -m flowdec.train.valclips``). Per clip,
channel 0 at 48 kHz. For each band count: band edges ERB-spaced (``flowdec.dsp.envelope``) on a
plain STFT (n_fft 1536, hop 384), gain per band and block = 10·log10(E_clean / E_codec),
rounded to ``--step-db`` and clamped to ±12 dB, applied per frame and bin by interpolating
in time between block centres and in frequency between band centres (ERB rate). The cost
is the first-order entropy of each band's gain steps from block to block, pooled over all
clips (what an ideal entropy coder would need), and the fixed-length cost. ``--nfe N`` also
runs the postfilter (NFE N) and corrects its output the same way.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
from pedalboard.io import AudioFile

from flowdec.audio import resample
from flowdec.codec import Codec
from flowdec.dsp import features
from flowdec.dsp.envelope import band_edges, band_energy, erb_rate
from flowdec.evaluation import metrics
from results import save

RATE = 48000
PLAIN = features.STFTConfig(n_fft=1536, hop=384, alpha=1.0, beta=1.0)
MAX_GAIN_DB = 12.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", type=Path)
    p.add_argument("-b", "--bitrate", type=float, default=6.0)
    p.add_argument("--bands", type=int, nargs="+", default=[8, 16])
    p.add_argument("--block-seconds", type=float, default=0.5)
    p.add_argument("--step-db", type=float, default=1.5)
    p.add_argument("--nfe", type=int, default=0, help="also the postfilter at this NFE")
    p.add_argument("--max-seconds", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("bench_out/band_levels.json"))
    args = p.parse_args()
    files = sorted(args.clips.glob("*.wav"))
    if not files:
        raise SystemExit(f"{args.clips}: no .wav clips (is it a folder of <domain>_<n>.wav?)")
    codec = Codec(threads=args.threads)
    frames_per_block = max(1, round(args.block_seconds * RATE / PLAIN.hop))
    paths = ["codec"] + ([f"postfilter NFE {args.nfe}"] if args.nfe else [])
    variants = [(path, bands) for path in paths for bands in [0, *args.bands]]
    scores: dict[str, dict[str, list[float]]] = collections.defaultdict(
        lambda: collections.defaultdict(list))
    steps: dict[int, list[np.ndarray]] = collections.defaultdict(list)
    seconds = 0.0
    for f in files:
        with AudioFile(str(f)) as a:
            x, sr = a.read(a.frames), int(a.samplerate)
        x = resample(x, sr, RATE)[:1, : int(RATE * args.max_seconds)]
        seconds += x.shape[1] / RATE
        domain = f.stem.split("_")[0]
        bits = codec.encode(x, RATE, args.bitrate)
        outs = {"codec": codec.decode(bits, postfilter=False)}
        if args.nfe:
            outs[paths[1]] = codec.decode(bits, nfe=args.nfe, seed=0, postfilter=True)
        for path, bands in variants:
            y = outs[path]
            if bands:
                y, gains = correct(x, y, bands, frames_per_block, args.step_db)
                if path == "codec":
                    steps[bands].append(np.diff(gains, axis=1, prepend=0.0).ravel())
            name = f"{path}, {bands} bands" if bands else path
            for metric, fn in (("visqol", metrics.visqol), ("mel", metrics.mel_distance)):
                scores[name][f"{domain} {metric}"].append(fn(x[0], y[0], RATE))
        print(f"{f.stem} done", flush=True)
    names = list(scores)
    domains = sorted({f.stem.split("_")[0] for f in files})
    mean = {n: {k: round(float(np.mean(v)), 4) for k, v in scores[n].items()} for n in names}
    print(f"\n{len(files)} clips, {args.bitrate:g} kbit/s, blocks of {args.block_seconds:g} s, "
          f"{args.step_db:g} dB steps; ViSQOL ↑ / mel distance ↓")
    print(f"{'':34s}" + "".join(f"{d:>18s}" for d in domains))
    for n in names:
        print(f"{n:34s}" + "".join(f"{mean[n][d + ' visqol']:10.3f} /{mean[n][d + ' mel']:6.3f}"
                                   for d in domains))
    cost = {}
    for bands, s in steps.items():
        values = np.concatenate(s)
        _, counts = np.unique(values, return_counts=True)
        prob = counts / counts.sum()
        entropy = float(-(prob * np.log2(prob)).sum())
        levels = int(2 * MAX_GAIN_DB / args.step_db) + 1
        per_s = bands * RATE / (frames_per_block * PLAIN.hop)
        cost[bands] = {"entropy_bits_per_value": round(entropy, 3),
                       "entropy_bit_per_s": round(entropy * per_s, 1),
                       "fixed_bit_per_s": round(np.ceil(np.log2(levels)) * per_s, 1)}
        print(f"{bands} bands: {entropy:.2f} bit per gain step (entropy) → "
              f"{cost[bands]['entropy_bit_per_s']:.0f} bit/s per channel "
              f"({cost[bands]['entropy_bit_per_s'] / (10 * args.bitrate):.1f} % of "
              f"{args.bitrate:g} kbit/s); fixed-length {cost[bands]['fixed_bit_per_s']:.0f} bit/s")
    save(args.out, {"clips": len(files), "seconds": round(seconds, 2), "bitrate": args.bitrate,
                    "block_seconds": args.block_seconds, "step_db": args.step_db,
                    "nfe": args.nfe, "mean": mean, "side_info_cost": cost,
                    "command": "python benchmarks/bench_band_levels.py CLIP_DIR "
                               f"-b {args.bitrate:g} --bands {' '.join(map(str, args.bands))} "
                               f"--block-seconds {args.block_seconds:g} "
                               f"--step-db {args.step_db:g} --nfe {args.nfe} "
                               f"--max-seconds {args.max_seconds:g}"})


def correct(x: np.ndarray, y: np.ndarray, bands: int, frames_per_block: int,
            step_db: float) -> tuple[np.ndarray, np.ndarray]:
    """y with each band's energy per block set to x's (quantised); returns (audio, the
    quantised gains [bands, blocks] in dB)."""
    X, Y = features.analysis(x, PLAIN), features.analysis(y, PLAIN)
    n = min(X.shape[-1], Y.shape[-1])
    X, Y = X[..., :n], Y[..., :n]
    edges = band_edges(PLAIN.n_fft, RATE, bands)
    blocks = -(-n // frames_per_block)
    pad = blocks * frames_per_block - n

    def per_block(Z: np.ndarray) -> np.ndarray:
        e = np.pad(band_energy(Z, edges, PLAIN.alpha)[0], ((0, 0), (0, pad)))
        out: np.ndarray = e.reshape(len(edges) - 1, blocks, frames_per_block).sum(-1)
        return out

    floor = 1e-10 * PLAIN.n_fft * frames_per_block
    gain = 10 * np.log10((per_block(X) + floor) / (per_block(Y) + floor))
    gain = np.clip(np.round(gain / step_db) * step_db, -MAX_GAIN_DB, MAX_GAIN_DB)
    # per frame: linear in time between block centres
    centres = (np.arange(blocks) + 0.5) * frames_per_block
    frames = np.arange(n)
    g_t = np.stack([np.interp(frames, centres, g) for g in gain])  # [bands, frames]
    # per bin: linear in ERB rate between band centres
    hz = np.arange(PLAIN.n_freq) * RATE / PLAIN.n_fft
    erb = erb_rate(hz)
    mid = np.array([erb[a:b].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)])
    g_tf = np.stack([np.interp(erb, mid, g_t[:, t]) for t in range(n)], axis=1)  # [F, frames]
    scale = (10 ** (g_tf / 20)).astype(np.float32)
    out = features.synthesis(Y * scale[None, None], y.shape[1], PLAIN)
    return out.astype(np.float32), gain


if __name__ == "__main__":
    main()
