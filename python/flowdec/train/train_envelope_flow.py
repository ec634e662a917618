r"""Train the envelope flow (:mod:`flowdec.train.envelope_flow`) on a codec pair cache.

    python -m flowdec.train.train_envelope_flow --pairs /data/pairs \
        --run-dir runs/envelope_flow [--steps N] [--max-minutes M] [--threads 1]

The first run computes the band powers of every pair (x clean, y codec output; about a
minute) into ``RUN/levels/`` and estimates the per-band σ from them; training then draws
crops of ``crop_frames`` frames of those powers, each pair at a random peak level in
[``min_peak_dbfs``, 0] dBFS (peak of y at 0 dBFS first, as the runtime presents its input).
The last ``valid_pairs`` pairs are held out: validation reports the flow loss and, for
NFE-6 samples, the mean absolute level error in dB against the clean levels (and the codec
output's), and how much the levels move from frame to frame against the clean ones (a
blurred, mean-like envelope moves less). Resumes from RUN/checkpoint.pt.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from . import band_envelope as be
from .envelope_flow import (
    DB_PER_UNIT,
    EnvelopeFlowConfig,
    EnvelopeFlowNet,
    estimate_sigma,
    flow_loss,
    sample,
)
from .loop import (
    Trainer,
    add_run_options,
    apply_run_options,
    describe_hardware,
    finish,
    init_distributed,
)

EDGE_FRAMES = 2
"""Frames dropped at each end of a pair (the STFT's half-empty edge frames)."""


@dataclasses.dataclass
class EnvelopeFlowTrain:
    crop_frames: int = 128  # ~1 s
    batch_size: int = 32
    lr: float = 1e-3
    lr_min: float = 1e-4
    warmup_steps: int = 300
    total_steps: int = 30_000
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    checkpoint_every_s: float = 180.0
    validate_every: int = 500
    seed: int = 0
    threads: int = 1
    min_peak_dbfs: float = -18.0
    valid_pairs: int = 200
    bf16: bool = False


def prepare_levels(pairs: Path, out: Path, bands: int, chunk: int = 64) -> dict[str, object]:
    """Band powers of every pair (y peak-normalised to 1, x by the same factor) as float32
    memmaps ``px.npy``, ``py.npy`` ``[pairs, bands, frames]`` and ``meta.json``."""
    meta = json.loads((pairs / "meta.json").read_text())
    xs = np.load(pairs / "x.npy", mmap_mode="r")
    ys = np.load(pairs / "y.npy", mmap_mode="r")
    edges = be.edges_for(bands)
    n_frames = xs.shape[1] // be.STFT.hop + 1
    out.mkdir(parents=True, exist_ok=True)
    shape = (xs.shape[0], len(edges) - 1, n_frames)
    px = np.lib.format.open_memmap(out / "px.npy.part", "w+", np.float32, shape)
    py = np.lib.format.open_memmap(out / "py.npy.part", "w+", np.float32, shape)
    for s in range(0, xs.shape[0], chunk):
        x = xs[s : s + chunk].astype(np.float32)
        y = ys[s : s + chunk].astype(np.float32)
        peak = np.abs(y).max(1, keepdims=True) + 1e-8
        px[s : s + chunk] = be.band_power(be.spectrum(x / peak), edges)
        py[s : s + chunk] = be.band_power(be.spectrum(y / peak), edges)
    px.flush()
    py.flush()
    del px, py
    (out / "px.npy.part").replace(out / "px.npy")
    (out / "py.npy.part").replace(out / "py.npy")
    info = {"pairs": str(pairs), "codec_step": meta["codec_step"], "bands": bands,
            "edges": edges.tolist(), "codebooks": meta["codebooks"], "domains": meta["domains"]}
    (out / "meta.json").write_text(json.dumps(info))
    return info


class LevelCrops:
    """Random crops of cached band powers → levels (flow units) x, y ``[B, bands, frames]``."""

    def __init__(self, px: np.ndarray, py: np.ndarray, frames: int, min_peak_dbfs: float,
                 seed: int) -> None:
        self.px, self.py, self.frames = px, py, frames
        self.min_peak_dbfs = min_peak_dbfs
        self.rng = np.random.default_rng(seed)
        if frames > px.shape[2] - 2 * EDGE_FRAMES:
            raise ValueError(f"crops of {frames} frames are longer than the pairs "
                             f"({px.shape[2] - 2 * EDGE_FRAMES} frames)")

    def levels(self, p: np.ndarray, gain_db: np.ndarray) -> torch.Tensor:
        lv = be.level_db(p * 10.0 ** (gain_db[:, None, None] / 10.0)) / DB_PER_UNIT
        return torch.from_numpy(lv)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.rng.integers(0, self.px.shape[0], size)
        start = self.rng.integers(EDGE_FRAMES, self.px.shape[2] - EDGE_FRAMES - self.frames + 1,
                                  size)
        px = np.stack([self.px[i, :, s : s + self.frames] for i, s in zip(idx, start,
                                                                         strict=True)])
        py = np.stack([self.py[i, :, s : s + self.frames] for i, s in zip(idx, start,
                                                                         strict=True)])
        g = self.rng.uniform(self.min_peak_dbfs, 0.0, size) if self.min_peak_dbfs < 0 \
            else np.zeros(size)
        return self.levels(px, g), self.levels(py, g)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pairs", required=True, help="pair cache (flowdec.train.pairs)")
    p.add_argument("--levels", help="band-power cache (default RUN/levels; made if missing)")
    p.add_argument("--channels", type=int, help="network width (new runs only)")
    p.add_argument("--bands", type=int, help="ERB bands (new runs only; default 64)")
    p.add_argument("--lookahead-blocks", type=int,
                   help="new runs: centred (non-causal) blocks at the start (default 0)")
    p.add_argument("--sigma-scale", type=float, default=1.0,
                   help="new runs: multiply the estimated per-band σ by this")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward pass")
    add_run_options(p)
    args = p.parse_args(argv)

    run_dir = Path(args.run_dir)
    ckpt = run_dir / "checkpoint.pt"
    if ckpt.exists():
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)["config"]
        net_cfg = EnvelopeFlowConfig(**{**saved["net"], "dilations": tuple(
            saved["net"]["dilations"])})
        tr = EnvelopeFlowTrain(**saved["train"])
    else:
        net_cfg = EnvelopeFlowConfig()
        if args.channels:
            net_cfg.channels = args.channels
        if args.bands:
            net_cfg.bands = args.bands
        if args.lookahead_blocks:
            net_cfg.lookahead_blocks = args.lookahead_blocks
        tr = EnvelopeFlowTrain()
    apply_run_options(args, tr)
    if args.bf16:
        tr.bf16 = True
    torch.set_num_threads(tr.threads)

    levels_dir = Path(args.levels) if args.levels else run_dir / "levels"
    if not (levels_dir / "meta.json").is_file():
        print(f"band powers of {args.pairs} → {levels_dir}", flush=True)
        prepare_levels(Path(args.pairs), levels_dir, net_cfg.bands)
    info = json.loads((levels_dir / "meta.json").read_text())
    if info["bands"] != net_cfg.bands:
        raise SystemExit(f"{levels_dir} has {info['bands']} bands, the run uses "
                         f"{net_cfg.bands}: pass another --levels folder")
    px = np.load(levels_dir / "px.npy", mmap_mode="r")
    py = np.load(levels_dir / "py.npy", mmap_mode="r")
    n_train = px.shape[0] - tr.valid_pairs
    if not net_cfg.sigma:
        lx = be.level_db(np.asarray(px[:n_train:4]))
        ly = be.level_db(np.asarray(py[:n_train:4]))
        net_cfg.sigma = (estimate_sigma(lx, ly) * args.sigma_scale).round(4).tolist()
    sigma = torch.tensor(net_cfg.sigma, dtype=torch.float32)

    config = {"net": dataclasses.asdict(net_cfg), "train": dataclasses.asdict(tr),
              "pairs": str(args.pairs), "codec_step": info["codec_step"]}
    d = init_distributed("cpu" if args.device == "auto" else args.device)
    config["hardware"] = describe_hardware(d.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=1))
    net = EnvelopeFlowNet(net_cfg)
    trainer = Trainer(run_dir, net, config, d, tr.lr, tr.lr_min, tr.warmup_steps, tr.total_steps,
                      (0.9, 0.999), tr.grad_clip, tr.ema_decay, tr.checkpoint_every_s, tr.seed,
                      init_weights=args.init)
    crops = LevelCrops(px[:n_train], py[:n_train], tr.crop_frames, tr.min_peak_dbfs,
                       tr.seed * 1000 + trainer.step)

    def step_fn(m: torch.nn.Module, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = crops.batch(tr.batch_size)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=tr.bf16):
            loss = flow_loss(m, x, y, sigma)
        return loss.float(), {}

    vcrops = LevelCrops(px[n_train:], py[n_train:], 240, 0.0, 4321)
    vx, vy = vcrops.batch(64)

    @torch.no_grad()
    def validate(ema: torch.nn.Module) -> dict[str, float]:
        ema.eval()
        torch.manual_seed(0)
        ts = torch.linspace(0.05, 0.95, vx.shape[0])
        out = {"flow_loss": float(flow_loss(ema, vx, vy, sigma, ts))}
        gen = torch.Generator().manual_seed(0)
        s = sample(ema, vy, sigma, 6, "midpoint", 1.0, gen)
        out["err_db_nfe6"] = float((s - vx).abs().mean() * DB_PER_UNIT)
        out["err_db_codec"] = float((vy - vx).abs().mean() * DB_PER_UNIT)
        dx = (vx[..., 1:] - vx[..., :-1]).abs().mean()
        out["motion_nfe6"] = float((s[..., 1:] - s[..., :-1]).abs().mean() / dx)
        out["motion_codec"] = float((vy[..., 1:] - vy[..., :-1]).abs().mean() / dx)
        return out

    trainer.fit(step_fn, validate, steps=args.steps, max_minutes=args.max_minutes,
                validate_every=tr.validate_every, log_every=25)
    finish(trainer, args.save_weights)


if __name__ == "__main__":
    main()
