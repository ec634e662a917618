r"""Train the flow-matching postfilter against a frozen codec.

    python -m flowdec.train.train_postfilter --codec-run runs/codec --cache CACHE \
        --sigma sigma.json --run-dir runs/postfilter [--steps N] [--max-minutes M]

Joint flow matching (σ_x = 0): X₀ = Y + σ_y(f)·z, X_t = (1−t)X₀ + tX, target u = X − X₀,
loss = mean |v_θ(X_t, Y, t) − u|². With ``--regression-steps N`` the run's first N steps
take t = 0 only: one Euler step from X₀ is then a regression of X on Y (the conditional
mean), a warm start for the flow objective that follows. With ``--codec-envelope-target``
the target X is replaced by X with the codec output's band envelope (the card's envelope
bands, every frame; :func:`flowdec.dsp.envelope.match_envelope`): the network then learns
only the fine structure inside bands, which is all the runtime's envelope stage lets through.

Each example is normalised by max|y| and then given a random peak level in
[``min_peak_dbfs``, ``postfilter_model.PEAK_TOP_DBFS``] ([−18, 0] dBFS by default;
``--min-peak-dbfs``). The runtime presents its input at the top of that range with a peak
follower that looks one frame ahead (the card's ``input_level``,
:class:`flowdec.dsp.level.PeakNormalizer`): no whole-file normalisation, which would break
chunked and streaming processing. Pairs (x, y = D0(E(x))) at random bitrates are made on
the fly, or drawn from a pair cache (``--pairs``, see ``flowdec.train.pairs``; faster on a
CPU: the codec runs once per pair, not in every step). Resumes from RUN/checkpoint.pt.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from ..dsp.envelope import band_edges
from .codec_model import load_codec
from .data import AudioCache, CropSampler
from .loop import (
    Prefetch,
    Trainer,
    add_run_options,
    apply_run_options,
    describe_hardware,
    finish,
    init_distributed,
)
from .losses import MelDistance
from .pairs import PairSampler
from .postfilter_model import (
    ENVELOPE,
    PEAK_TOP_DBFS,
    PostfilterConfig,
    PostfilterNet,
    istft_features,
    stft_features,
)
from .sigma import codec_pairs


@dataclasses.dataclass
class PostfilterTrain:
    crop_seconds: float = 0.55  # → 64 frames of hop 384 after trimming
    context_seconds: float = 0.25  # codec context on each side, discarded
    batch_size: int = 16
    lr: float = 1e-3
    lr_min: float = 1e-4
    warmup_steps: int = 300
    total_steps: int = 200_000
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    checkpoint_every_s: float = 300.0
    validate_every: int = 500
    seed: int = 0
    threads: int = 2
    min_peak_dbfs: float = -18.0  # examples' peak levels: uniform in [this, PEAK_TOP_DBFS]
    regression_until: int = 0  # steps below this train at t = 0 only (see the module doc)
    codec_envelope_target: bool = False  # the target: clean fine structure, codec's envelope


class BandEnvelope:
    """:func:`flowdec.dsp.envelope.match_envelope` in torch, with the card's envelope bands
    (``ENVELOPE``, no kept bins): features ``[B, 2, F, N]`` of compression ``alpha``."""

    def __init__(self, n_fft: int, sample_rate: int, alpha: float,
                 device: torch.device | str = "cpu") -> None:
        edges = band_edges(n_fft, sample_rate, int(ENVELOPE["bands"]))
        self.bins = torch.zeros(n_fft // 2 + 1, len(edges) - 1, dtype=torch.float64,
                                device=device)  # [F, bands] one-hot
        for b in range(len(edges) - 1):
            self.bins[edges[b] : edges[b + 1], b] = 1.0
        self.alpha = alpha
        self.max_gain = 10.0 ** (float(ENVELOPE["max_gain_db"]) / 10.0)

    def energy(self, Z: torch.Tensor) -> torch.Tensor:
        """Uncompressed energy per band and frame, ``[B, bands, N]`` float64."""
        p = (Z[:, 0].double() ** 2 + Z[:, 1].double() ** 2) ** (1.0 / self.alpha)
        return torch.einsum("bfn,fk->bkn", p, self.bins)

    def match(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """X with each frame's band energies set to Y's (gains clamped as the card's)."""
        ratio = ((self.energy(Y) + 1e-30) / (self.energy(X) + 1e-30)).clamp(
            1.0 / self.max_gain, self.max_gain)
        scale = torch.einsum("bkn,fk->bfn", ratio ** (self.alpha / 2), self.bins)
        return X * scale.to(X.dtype)[:, None]


def sample_noise_like(y: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Complex standard normal as [B, 2, F, N]: Re and Im each N(0, ½) (drawn where ``gen``
    lives, so a CPU generator gives the same noise for a model on any device)."""
    dev = gen.device if gen is not None else y.device
    return torch.randn(y.shape, generator=gen, device=dev).to(y.device) * (0.5 ** 0.5)


@torch.no_grad()
def midpoint(net: torch.nn.Module, Y: torch.Tensor, sigma: torch.Tensor, nfe: int,
             gen: torch.Generator | None = None) -> torch.Tensor:
    """Reference sampler in torch (the runtime uses the C++ solver): midpoint, nfe/2 steps."""
    x = Y + sigma * sample_noise_like(Y, gen)
    steps = nfe // 2
    h = 1.0 / steps
    for i in range(steps):
        t = torch.full((Y.shape[0],), i * h, device=Y.device)
        k1 = net(x, Y, t)
        k2 = net(x + 0.5 * h * k1, Y, t + 0.5 * h)
        x = x + h * k2
    return x


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--codec-run", required=True,
                   help="codec run folder (frozen EMA weights) or codec weights file")
    p.add_argument("--cache", required=True, help="audio cache folder (or shard)")
    p.add_argument("--sigma", help="JSON from flowdec.train.sigma (new runs; with --init it "
                                   "replaces the weights' σ_y and must have their β; a resumed "
                                   "run keeps its own)")
    p.add_argument("--pairs", help="pair cache from flowdec.train.pairs (same codec run)")
    p.add_argument("--channels", type=int, help="network width (new runs only)")
    p.add_argument("--global-sigma", action="store_true", help="use the scalar σ_y (ablation)")
    p.add_argument("--min-peak-dbfs", type=float,
                   help="quietest example peak level (default -18; the runtime presents input "
                        f"at {PEAK_TOP_DBFS:g} dBFS)")
    p.add_argument("--codec-envelope-target", action="store_true",
                   help="new runs: train toward the clean fine structure under the codec "
                        "output's band envelope")
    p.add_argument("--regression-steps", type=int,
                   help="new runs: the first N steps at t = 0 only (regression), then the flow")
    add_run_options(p)
    args = p.parse_args(argv)

    run_dir = Path(args.run_dir)
    ckpt = run_dir / "checkpoint.pt"
    source = ckpt if ckpt.exists() else Path(args.init) if args.init else None
    if source is None and not args.sigma:
        p.error("a new run needs --sigma (or --init WEIGHTS to start from trained weights)")
    sig = json.loads(Path(args.sigma).read_text()) if args.sigma else {}
    start_step = 0
    if source is not None:
        loaded = torch.load(source, map_location="cpu", weights_only=False)
        saved, start_step = loaded["config"], int(loaded.get("step", 0))
        del loaded
        net_cfg = PostfilterConfig(**saved["net"])
        tr = PostfilterTrain(**saved["train"])
        if source == ckpt or not args.sigma:
            sig = saved["sigma"]
        elif abs(float(sig["beta"]) - net_cfg.beta) > 1e-9 * net_cfg.beta:
            p.error(f"{args.sigma} was estimated at beta {sig['beta']:g}, the network of "
                    f"{args.init} uses {net_cfg.beta:g}: rerun flowdec.train.sigma with "
                    f"--beta {net_cfg.beta!r}")
    else:
        net_cfg = PostfilterConfig(beta=float(sig["beta"]))
        if args.channels:
            net_cfg.channels = args.channels
        tr = PostfilterTrain()
        if args.global_sigma:
            sig = dict(sig, sigma_y=[sig["sigma_y_global"]] * net_cfg.n_freq)
    apply_run_options(args, tr)
    if args.min_peak_dbfs is not None:
        tr.min_peak_dbfs = min(args.min_peak_dbfs, PEAK_TOP_DBFS)
    if args.codec_envelope_target and source != ckpt:
        tr.codec_envelope_target = True
    if args.regression_steps is not None and source != ckpt:
        tr.regression_until = start_step + max(0, args.regression_steps)
    torch.set_num_threads(tr.threads)
    config = {"net": dataclasses.asdict(net_cfg), "train": dataclasses.asdict(tr), "sigma": sig,
              "codec_run": str(args.codec_run)}

    d = init_distributed(args.device)
    config["hardware"] = describe_hardware(d.device)  # of this launch (a resumed run: the last)
    codec, codec_cfg, codec_info = load_codec(args.codec_run, float16=True)
    codec = codec.to(d.device)
    cache = AudioCache(args.cache)
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config, indent=1))
    net = PostfilterNet(net_cfg)
    trainer = Trainer(run_dir, net, config, d, tr.lr, tr.lr_min, tr.warmup_steps, tr.total_steps,
                      (0.9, 0.999), tr.grad_clip, tr.ema_decay, tr.checkpoint_every_s, tr.seed,
                      init_weights=args.init)
    sr = codec_cfg.model.sample_rate
    ctx = int(tr.context_seconds * sr)
    n_frames = int(tr.crop_seconds * sr) // net_cfg.hop // net_cfg.patch_t * net_cfg.patch_t
    seg = (n_frames - 1) * net_cfg.hop
    sample_seed = tr.seed * 1000 + d.rank + trainer.step
    rng = np.random.default_rng(tr.seed + d.rank + trainer.step)
    levels = np.array(codec_cfg.model.bitrates_codebooks)
    sigma = torch.tensor(sig["sigma_y"], dtype=torch.float32, device=d.device)[None, None, :, None]

    def coded(x: np.ndarray, n_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the codec on crops with context; return the centre (x, y)."""
        y = codec_pairs(codec, x, n_q)
        return x[:, ctx : ctx + seg], y[:, ctx : ctx + seg]

    if args.pairs:
        pairs = PairSampler(args.pairs, seg, sample_seed)
        if pairs.meta["codec_step"] != codec_info["steps"]:
            raise SystemExit(f"{args.pairs} was made with the codec at step "
                             f"{pairs.meta['codec_step']}, the codec run is at step "
                             f"{codec_info['steps']}: rebuild it with flowdec.train.pairs")

        def train_pairs() -> tuple[np.ndarray, np.ndarray]:
            return pairs.batch(tr.batch_size)
    else:
        sampler = CropSampler(cache, "train", (seg + 2 * ctx) / sr, seed=sample_seed)

        def cut() -> np.ndarray:
            return sampler.batch(tr.batch_size)

        # on a GPU the crops (~16 ms for 64 on one core) are cut beside the step, not before it
        crops = Prefetch(cut) if d.device.type == "cuda" else None

        def train_pairs() -> tuple[np.ndarray, np.ndarray]:
            x = next(crops) if crops is not None else cut()
            return coded(x, rng.choice(levels, tr.batch_size))

    def make_batch(x: np.ndarray, y: np.ndarray, level_db: float = tr.min_peak_dbfs
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs at peak levels drawn from [level_db, PEAK_TOP_DBFS] dBFS."""
        peak = np.abs(y).max(1, keepdims=True) + 1e-8
        peak = peak / 10 ** (rng.uniform(level_db, PEAK_TOP_DBFS, (x.shape[0], 1)) / 20)
        xt = torch.from_numpy(x / peak).float().to(d.device)
        yt = torch.from_numpy(y / peak).float().to(d.device)
        return stft_features(xt, net_cfg), stft_features(yt, net_cfg)

    envelope = BandEnvelope(net_cfg.n_fft, sr, net_cfg.alpha, d.device)

    def step_fn(m: torch.nn.Module, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        X, Y = make_batch(*train_pairs())
        if tr.codec_envelope_target:
            X = envelope.match(X, Y)
        t = torch.rand(X.shape[0], device=d.device)
        if step < tr.regression_until:
            t = torch.zeros_like(t)
        X0 = Y + sigma * sample_noise_like(Y)
        tt = t[:, None, None, None]
        Xt = (1 - tt) * X0 + tt * X
        v = m(Xt, Y, t)
        loss = ((v - (X - X0)) ** 2).sum(1).mean()
        return loss, {}

    vs = CropSampler(cache, "valid", (seg + 2 * ctx) / sr, seed=4321, augment=False)
    val = {dom: np.stack([vs.crop(dom)[0] for _ in range(4)]) for dom in vs.domains}
    mel = MelDistance((512, 1024, 2048), (48, 80, 128), sr).to(d.device)

    @torch.no_grad()
    def validate(ema: torch.nn.Module) -> dict[str, float]:
        ema.eval()
        out: dict[str, float] = {}
        gen = torch.Generator().manual_seed(0)
        for dom, xs in val.items():
            X, Y = make_batch(*coded(xs, np.full(xs.shape[0], 8)), level_db=PEAK_TOP_DBFS)
            x = istft_features(X, seg, net_cfg)
            y = istft_features(Y, seg, net_cfg)
            e = istft_features(midpoint(ema, Y, sigma, 6, gen), seg, net_cfg)
            out[f"{dom}_mel_ndac"] = float(mel(y, x))
            out[f"{dom}_mel_nfe6"] = float(mel(e, x))
        return out

    trainer.fit(step_fn, validate, steps=args.steps, max_minutes=args.max_minutes,
                validate_every=tr.validate_every, log_every=25)
    finish(trainer, args.save_weights)


if __name__ == "__main__":
    main()
