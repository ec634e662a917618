"""Estimate β and the prior noise scale σ_y(f) from (clean x, codec output y) pairs.

β: the 0.997-quantile of |Φ(x)| with β = 1 is mapped to 1 (β = 1/q).
σ_y(f): per clip and band, the RMS over time of |Φ(y) − Φ(x)|; the 0.997-quantile over
clips divided by 3; then smoothed along frequency with a Gaussian (std 3 bins).
Global σ_y: the same with one RMS per clip over all bands.

    python -m flowdec.train.sigma --codec-run runs/codec --data DATA --cache CACHE --out sigma.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .codec_model import load_codec
from .data import AudioCache, CropSampler
from .postfilter_model import PostfilterConfig, stft_features

QUANTILE = 0.997


def gaussian_smooth(v: np.ndarray, std_bins: float = 3.0) -> np.ndarray:
    r = int(np.ceil(4 * std_bins))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / std_bins) ** 2)
    k /= k.sum()
    padded = np.pad(v, r, mode="edge")
    return np.convolve(padded, k, mode="valid")


@torch.no_grad()
def codec_pairs(codec: torch.nn.Module, x: np.ndarray, n_q: np.ndarray) -> np.ndarray:
    """Run the codec on [B, T] audio with n_q[b] codebooks per item → y [B, T] (on the
    codec's device)."""
    hop = codec.cfg.hop
    t = x.shape[1] // hop * hop
    dev = next(codec.parameters()).device
    xt = torch.from_numpy(np.ascontiguousarray(x[:, :t])).to(dev)
    y = codec(xt, torch.from_numpy(n_q).to(dev))["audio"].float().cpu().numpy()
    out = np.zeros_like(x)
    out[:, :t] = y
    return out


def estimate(codec: torch.nn.Module, cache: AudioCache, cfg: PostfilterConfig, n_pairs: int,
             seconds: float = 2.0, seed: int = 7, batch: int = 16,
             beta: float | None = None) -> dict[str, object]:
    """β and σ_y(f) from ``n_pairs`` coded crops; ``beta`` given: σ_y(f) at that β (a
    network trained at it keeps its input scale), the measured β recorded beside it."""
    sampler = CropSampler(cache, "train", seconds, seed=seed, augment=True)
    rng = np.random.default_rng(seed)
    levels = np.array(codec.cfg.bitrates_codebooks)
    mags, band_rms, clip_rms = [], [], []
    unit = replace(cfg, beta=1.0)
    xs, ys = [], []
    done = 0
    while done < n_pairs:
        b = min(batch, n_pairs - done)
        x = sampler.batch(b)
        y = codec_pairs(codec, x, rng.choice(levels, b))
        peak = np.abs(y).max(1, keepdims=True) + 1e-8
        xs.append(x / peak)
        ys.append(y / peak)
        mags.append(stft_features(torch.from_numpy(x / peak).float(), unit).norm(dim=1).flatten()
                    .numpy()[::97])
        done += b
    measured = 1.0 / float(np.quantile(np.concatenate(mags), QUANTILE))
    beta = measured if beta is None else beta
    feat = replace(cfg, beta=beta)
    for x, y in zip(xs, ys, strict=True):
        d = stft_features(torch.from_numpy(y).float(), feat) - stft_features(
            torch.from_numpy(x).float(), feat)
        p = (d * d).sum(1)  # |D|² [B, F, N]
        band_rms.append(torch.sqrt(p.mean(-1)).numpy())
        clip_rms.append(torch.sqrt(p.mean((-1, -2))).numpy())
    br = np.concatenate(band_rms)  # [clips, F]
    cr = np.concatenate(clip_rms)
    sigma_f = gaussian_smooth(np.quantile(br, QUANTILE, axis=0) / 3.0, 3.0)
    return {
        "beta": beta,
        "beta_measured": measured,
        "sigma_y": [float(v) for v in sigma_f],
        "sigma_y_global": float(np.quantile(cr, QUANTILE) / 3.0),
        "pairs": int(n_pairs),
        "seconds_per_pair": seconds,
        "quantile": QUANTILE,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--codec-run", required=True)
    p.add_argument("--cache", required=True, help="audio cache folder (see train_codec)")
    p.add_argument("--pairs", type=int, default=1000)
    p.add_argument("--out", required=True)
    p.add_argument("--beta", type=float,
                   help="σ_y at this β (a postfilter's, to fine-tune it) instead of measuring β")
    args = p.parse_args(argv)
    codec, _, _ = load_codec(args.codec_run, float16=True)  # as exported
    res = estimate(codec, AudioCache(args.cache), PostfilterConfig(), args.pairs, beta=args.beta)
    Path(args.out).write_text(json.dumps(res, indent=1))
    s = np.array(res["sigma_y"])
    print(f"beta={res['beta']:.4f} sigma_y global={res['sigma_y_global']:.3f} "
          f"per-band min/mean/max={s.min():.3f}/{s.mean():.3f}/{s.max():.3f}")


if __name__ == "__main__":
    main()
