r"""A disk cache of (clean x, codec output y) pairs for postfilter training.

Running the frozen codec inside every postfilter step costs about as much as the postfilter
step itself on a CPU. The pairs do not change while the codec is frozen, so they are made
once, at random bitrates, and the trainer draws random sub-crops from them:

    python -m flowdec.train.pairs --codec-run runs/codec --cache CACHE --out PAIRS \
        [--pairs 4000 --seconds 2.0]

PAIRS holds ``x.f16`` and ``y.f16`` (float16 memmaps [pairs, samples] at 48 kHz) and
``meta.json`` (codec step, codebooks and domain per pair). Each pair was coded with 0.25 s
of real audio on each side, which is then discarded, so no pair has codec edge effects.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .codec_model import load_codec
from .data import SAMPLE_RATE, AudioCache, CropSampler
from .sigma import codec_pairs

CONTEXT_SECONDS = 0.25


def build(codec: torch.nn.Module, codec_step: int, cache: AudioCache, out: str | os.PathLike[str],
          n_pairs: int, seconds: float, seed: int = 11, batch: int = 8) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * SAMPLE_RATE))
    ctx = int(round(CONTEXT_SECONDS * SAMPLE_RATE))
    sampler = CropSampler(cache, "train", (n + 2 * ctx) / SAMPLE_RATE, seed=seed)
    rng = np.random.default_rng(seed)
    levels = np.array(codec.cfg.bitrates_codebooks)
    xs = np.lib.format.open_memmap(out / "x.npy.part", "w+", np.float16, (n_pairs, n))
    ys = np.lib.format.open_memmap(out / "y.npy.part", "w+", np.float16, (n_pairs, n))
    n_q = np.zeros(n_pairs, np.int64)
    domains: list[str] = []
    with tqdm(total=n_pairs, unit="pair", desc="codec pairs") as bar:
        for start in range(0, n_pairs, batch):
            b = min(batch, n_pairs - start)
            crops = [sampler.crop() for _ in range(b)]
            x = np.stack([c[0] for c in crops])
            q = rng.choice(levels, b)
            y = codec_pairs(codec, x, q)
            xs[start : start + b] = x[:, ctx : ctx + n]
            ys[start : start + b] = y[:, ctx : ctx + n]
            n_q[start : start + b] = q
            domains += [c[1] for c in crops]
            bar.update(b)
    xs.flush()
    ys.flush()
    del xs, ys
    os.replace(out / "x.npy.part", out / "x.npy")
    os.replace(out / "y.npy.part", out / "y.npy")
    meta = {"codec_step": codec_step, "pairs": n_pairs, "seconds": seconds,
            "sample_rate": SAMPLE_RATE, "codebooks": n_q.tolist(), "domains": domains}
    (out / "meta.json").write_text(json.dumps(meta))
    return out


class PairSampler:
    """Random sub-crops of cached pairs → (x [B, n], y [B, n]) float32."""

    def __init__(self, folder: str | os.PathLike[str], samples: int, seed: int) -> None:
        folder = Path(folder)
        self.meta = json.loads((folder / "meta.json").read_text())
        self.x = np.load(folder / "x.npy", mmap_mode="r")
        self.y = np.load(folder / "y.npy", mmap_mode="r")
        if samples > self.x.shape[1]:
            raise ValueError(f"crops of {samples} samples are longer than the cached pairs "
                             f"({self.x.shape[1]}); rebuild them with a larger --seconds")
        self.n = samples
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.rng.integers(0, len(self), size)
        start = self.rng.integers(0, self.x.shape[1] - self.n + 1, size)
        x = np.stack([self.x[i, s : s + self.n] for i, s in zip(idx, start, strict=True)])
        y = np.stack([self.y[i, s : s + self.n] for i, s in zip(idx, start, strict=True)])
        return x.astype(np.float32), y.astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--codec-run", required=True, help="codec run folder (frozen EMA weights)")
    p.add_argument("--cache", required=True, help="audio cache folder (see train_codec)")
    p.add_argument("--out", required=True, help="folder for the pairs")
    p.add_argument("--pairs", type=int, default=4000)
    p.add_argument("--seconds", type=float, default=2.0, help="length of each pair")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec, _, info = load_codec(args.codec_run, float16=True)  # as exported
    out = build(codec, info["steps"], AudioCache(args.cache), args.out, args.pairs, args.seconds)
    print(f"{args.pairs} pairs of {args.seconds} s in {out}")


if __name__ == "__main__":
    main()
