r"""Train the codec (NDAC).

    python -m flowdec.train.train_codec --data /data/flowdec_train --cache /data/cache \
        --run-dir runs/codec [--steps N] [--max-minutes M]

Re-running the same command resumes from ``RUN/checkpoint.pt``. ``--synthetic`` trains on
generated sines/noise/chirps (for tests). Multi-process: ``torchrun --nproc_per_node=N -m
flowdec.train.train_codec ...``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .codec_model import Codec
from .config import CodecRun
from .data import AudioCache, CropSampler, scan, synthetic_clips
from .loop import Trainer, add_run_options, apply_run_options, finish, init_distributed
from .losses import CodecLoss, MelDistance, si_sdr


def make_cache(args: argparse.Namespace) -> AudioCache:
    if args.synthetic:
        cache_dir = Path(args.cache or Path(args.run_dir) / "synthetic_cache")
        if (cache_dir / "index.json").exists():
            return AudioCache(cache_dir)
        return AudioCache.from_arrays(synthetic_clips(30, 3.0, seed=1), cache_dir)
    if args.data is None:
        raise SystemExit("--data DIR (a folder of audio or a manifest) or --synthetic is required")
    cache_dir = Path(args.cache or Path(args.data) / ".flowdec_cache")
    if (cache_dir / "index.json").exists():
        return AudioCache(cache_dir)
    return AudioCache.build(scan(args.data), cache_dir)


def validation_set(cache: AudioCache, seconds: float, per_domain: int) -> dict[str, np.ndarray]:
    sampler = CropSampler(cache, "valid", seconds, seed=1234, augment=False)
    return {d: np.stack([sampler.crop(d)[0] for _ in range(per_domain)]) for d in sampler.domains}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", help="training audio folder (with manifest.csv or domain folders)")
    p.add_argument("--cache", help="int16 cache folder (default DATA/.flowdec_cache)")
    add_run_options(p)
    p.add_argument("--synthetic", action="store_true", help="train on generated test signals")
    p.add_argument("--crop", type=float, help="crop length in seconds")
    p.add_argument("--dim", type=int,
                   help="trunk channels (new runs; a warm start keeps its weights' width)")
    p.add_argument("--enc-blocks", type=int,
                   help="encoder blocks (new runs; with --init: more blocks than the weights "
                        "have, the added ones starting as the identity)")
    p.add_argument("--dec-blocks", type=int, help="decoder blocks (as --enc-blocks)")
    p.add_argument("--checkpoint-minutes", type=float)
    p.add_argument("--mel-windows", type=int, nargs="+",
                   help="new runs: STFT windows of the multi-resolution mel loss")
    p.add_argument("--mel-bands", type=int, nargs="+", help="new runs: mel bands per window")
    p.add_argument("--complex-windows", type=int, nargs="+",
                   help="new runs: STFT windows of the compressed complex-spectrum loss")
    p.add_argument("--complex-weight", type=float, help="new runs: its weight (default 1)")
    args = p.parse_args(argv)

    run_dir = Path(args.run_dir)
    ckpt = run_dir / "checkpoint.pt"
    if ckpt.exists():
        cfg = CodecRun.from_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["config"])
    else:
        # a new run: the default model, or a warm start's, which may grow but not shrink
        cfg = (CodecRun.from_dict(torch.load(args.init, map_location="cpu",
                                             weights_only=False)["config"])
               if args.init else CodecRun())
        for field in ("dim", "enc_blocks", "dec_blocks"):
            value, have = getattr(args, field), getattr(cfg.model, field)
            if not value:
                continue
            if args.init and (value < have or (field == "dim" and value != have)):
                flag = "--" + field.replace("_", "-")
                raise SystemExit(f"{flag} {value}: {args.init} has {have}; a warm start keeps "
                                 "the width and can add blocks, not remove them")
            setattr(cfg.model, field, value)
    if not ckpt.exists() and (args.mel_windows or args.mel_bands):
        windows = tuple(args.mel_windows or cfg.loss.mel_windows)
        bands = tuple(args.mel_bands or cfg.loss.mel_bands)
        if len(windows) != len(bands):
            raise SystemExit(f"--mel-windows and --mel-bands differ in length: {windows}, {bands}")
        cfg.loss.mel_windows, cfg.loss.mel_bands = windows, bands
    loss_options = [o for o, v in (("--mel-windows", args.mel_windows),
                                   ("--mel-bands", args.mel_bands),
                                   ("--complex-windows", args.complex_windows),
                                   ("--complex-weight", args.complex_weight)) if v is not None]
    if ckpt.exists() and loss_options:
        print(f"{', '.join(loss_options)}: ignored, a resumed run keeps the loss it started "
              f"with ({ckpt})", flush=True)
    if args.complex_weight is not None and not args.complex_windows:
        raise SystemExit("--complex-weight needs --complex-windows")
    if not ckpt.exists() and args.complex_windows:
        cfg.loss.complex_windows = tuple(args.complex_windows)
        cfg.loss.complex_weight = 1.0 if args.complex_weight is None else args.complex_weight
        if cfg.loss.complex_weight <= 0:
            raise SystemExit(f"--complex-weight must be positive, not {cfg.loss.complex_weight}")
    t = cfg.train
    apply_run_options(args, t)
    if args.crop:
        t.crop_seconds = args.crop
    if args.checkpoint_minutes is not None:
        t.checkpoint_every_s = args.checkpoint_minutes * 60
    torch.set_num_threads(t.threads)

    d = init_distributed(args.device)
    if d.local_rank == 0:  # one process per machine builds the cache; the others open it after
        cache = make_cache(args)
    if d.world > 1:
        torch.distributed.barrier()
    if d.local_rank != 0:
        cache = make_cache(args)
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        print("data hours:", {k: round(v, 2) for k, v in cache.hours().items()}, flush=True)

    model = Codec(cfg.model)
    loss_fn = CodecLoss(cfg.loss, cfg.model.sample_rate).to(d.device)
    trainer = Trainer(run_dir, model, cfg.to_dict(), d, t.lr, t.lr_min, t.warmup_steps,
                      t.total_steps, t.betas, t.grad_clip, t.ema_decay, t.checkpoint_every_s,
                      t.seed, init_weights=args.init)
    seed = t.seed * 1000 + d.rank + trainer.step  # a resumed run draws new crops
    sampler = CropSampler(cache, "train", t.crop_seconds, seed=seed)
    n_q = cfg.model.n_codebooks
    hop = cfg.model.hop
    n = int(round(t.crop_seconds * cfg.model.sample_rate)) // hop * hop
    last_inputs: list[list[torch.Tensor]] = [[]]
    gen = torch.Generator().manual_seed(t.seed + d.rank + trainer.step)

    def step_fn(m: torch.nn.Module, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x = torch.from_numpy(sampler.batch(t.batch_size)[:, :n]).to(d.device)
        drop = torch.rand(t.batch_size, generator=gen) < t.quantizer_dropout
        n_active = torch.where(drop, torch.randint(1, n_q + 1, (t.batch_size,), generator=gen),
                               torch.full((t.batch_size,), n_q)).to(d.device)
        out = m(x, n_active)
        loss, parts = loss_fn(out["audio"], x, out["commit"], out["codebook"])
        last_inputs[0] = out["inputs"]
        codes = out["codes"]
        for i in range(n_q):  # codebook usage per level
            hist = torch.bincount(codes[:, i].flatten(), minlength=cfg.model.codebook_size).float()
            pr = hist / hist.sum()
            parts[f"ppl{i + 1}"] = float(torch.exp(-(pr * torch.log(pr + 1e-12)).sum()))
        return loss, parts

    def after_step(step: int) -> None:
        if step % t.dead_code_every == 0:
            model.quantizer.restart_dead_codes(last_inputs[0])

    val = validation_set(cache, 2.0, 4)
    mel = MelDistance(cfg.loss.mel_windows, cfg.loss.mel_bands, cfg.model.sample_rate)

    @torch.no_grad()
    def validate(ema: torch.nn.Module) -> dict[str, float]:
        ema.eval()
        out: dict[str, float] = {}
        for dom, xs in val.items():
            x = torch.from_numpy(xs[:, : xs.shape[1] // hop * hop]).to(d.device)
            for nq in cfg.model.bitrates_codebooks:
                y = ema(x, torch.full((x.shape[0],), nq, device=d.device))["audio"]
                out[f"{dom}_mel_q{nq}"] = float(mel.to(d.device)(y, x))
                out[f"{dom}_sisdr_q{nq}"] = float(si_sdr(y, x).mean())
        return out

    trainer.fit(step_fn, validate, steps=args.steps, max_minutes=args.max_minutes,
                validate_every=t.validate_every, log_every=t.log_every, after_step=after_step)
    finish(trainer, args.save_weights)


if __name__ == "__main__":
    main()
