"""A plain PyTorch training loop shared by the codec and the postfilter.

Resumable checkpoints (model, EMA, optimizer, step, RNG states, config) written atomically
every few minutes and on SIGTERM/SIGINT; EMA weights for export; a progress bar with loss and
steps/s; CSV logs; periodic validation. Runs on CPU, on one GPU, or on several processes with
``torchrun`` (torch.distributed DDP; gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import platform
import queue
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(f"cuda:{local}" if device == "cuda" else "cpu")
    if device == "cuda":
        torch.cuda.set_device(dev)
        torch.set_float32_matmul_precision("high")  # TF32 matrix products
        torch.backends.cudnn.benchmark = True  # fixed crop shapes: pick the fastest convolutions
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Dist(rank, world, local, dev)


def describe_hardware(device: torch.device) -> str:
    """What trains: the GPU's name, or the CPU's architecture and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU ({os.cpu_count()} cores)"


class Prefetch(Generic[T]):
    """Calls ``make()`` in a background thread, keeping up to ``depth`` results ready:
    ``next(p)`` returns them in call order (the same sequence as calling ``make`` in a loop).
    For CPU-side batch preparation beside a GPU step; an exception in ``make`` is raised by
    the ``next`` that would have returned its result."""

    def __init__(self, make: Callable[[], T], depth: int = 4) -> None:
        self.queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
        self.make = make
        threading.Thread(target=self._fill, daemon=True, name="prefetch").start()

    def _fill(self) -> None:
        while True:
            try:
                self.queue.put((True, self.make()))
            except BaseException as e:  # handed to the consumer, then this thread ends
                self.queue.put((False, e))
                return

    def __iter__(self) -> Prefetch[T]:
        return self

    def __next__(self) -> T:
        ok, value = self.queue.get()
        if not ok:
            self.queue.put((False, value))  # every later call fails the same way
            raise value
        return value


def load_allowing_new_layers(model: nn.Module, state: dict[str, Any], source: object
                             ) -> list[str]:
    """Load ``state`` into ``model``; parameters the state lacks (a layer added since) keep
    their initial values and are returned; parameters the model lacks are refused."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{source} has parameters this model does not: {unexpected}")
    return list(missing)


class EMA:
    """Exponential moving average of a model's parameters and buffers."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.model.parameters(), model.parameters(), strict=True):
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.model.buffers(), model.buffers(), strict=True):
            e.copy_(b)


def lr_at(step: int, base: float, minimum: float, warmup: int, total: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return minimum + 0.5 * (base - minimum) * (1 + math.cos(math.pi * p))


class Trainer:
    """Owns the optimisation state of one run directory.

    ``step_fn(model, step) -> (loss, logs)`` computes one batch's loss on this process;
    ``validate_fn(ema_model) -> logs`` runs on rank 0. The run directory holds
    ``checkpoint.pt`` (resumable state), ``train.csv`` and ``valid.csv``.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        model: nn.Module,
        config: dict[str, Any],
        dist_info: Dist,
        lr: float,
        lr_min: float,
        warmup: int,
        total_steps: int,
        betas: tuple[float, float] = (0.9, 0.999),
        grad_clip: float = 1.0,
        ema_decay: float = 0.999,
        checkpoint_every_s: float = 300.0,
        seed: int = 0,
        init_weights: str | os.PathLike[str] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.d = dist_info
        self.config = config
        self.model = model.to(dist_info.device)
        self.ema = EMA(self.model, ema_decay)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=betas, weight_decay=0.0)
        self.lr, self.lr_min, self.warmup, self.total = lr, lr_min, warmup, total_steps
        self.grad_clip = grad_clip
        self.checkpoint_every_s = checkpoint_every_s
        self.step = 0
        self.wall_s = 0.0
        self.stop_requested = False
        torch.manual_seed(seed + dist_info.rank)
        random.seed(seed + dist_info.rank)
        self.train_model: nn.Module = self.model
        if dist_info.world > 1:
            ids = [dist_info.local_rank] if dist_info.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if not self.resume() and init_weights is not None:
            self.warm_start(init_weights)

    def warm_start(self, path: str | os.PathLike[str]) -> None:
        """Start a new run from committed weights (a weights-only file from ``save_weights``).

        Parameters the file lacks (a layer added since) keep their initial values, except a
        residual block's output gain (``scale``), which starts at zero so that an added block
        is the identity and the model computes what the file's did; a file with parameters
        the model does not have is refused.
        """
        w = torch.load(path, map_location=self.d.device, weights_only=True)
        state = {k: v.float() if v.is_floating_point() else v for k, v in w["state"].items()}
        missing = load_allowing_new_layers(self.model, state, path)
        with torch.no_grad():
            for name, param in self.model.named_parameters():
                if name in missing and name.rsplit(".", 1)[-1] == "scale":
                    param.zero_()
        self.ema.model.load_state_dict(self.model.state_dict())
        if missing and self.d.main:
            print(f"warm start: new parameters start from their initial values (residual gains "
                  f"from zero): {missing}", flush=True)
        self.step = int(w.get("step", 0))
        self.wall_s = float(w.get("wall_s", 0.0))
        if self.d.main:
            print(f"warm start from {path} (step {self.step})", flush=True)

    def save_weights(self, path: str | os.PathLike[str]) -> None:
        """EMA weights only, in float16 (small enough for git), plus step and wall time."""
        state = {k: v.half() if v.is_floating_point() else v
                 for k, v in self.ema.model.state_dict().items()}
        tmp = Path(path).with_suffix(".part")
        torch.save({"state": state, "step": self.step, "wall_s": self.wall_s,
                    "config": self.config}, tmp)
        os.replace(tmp, path)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "step": self.step,
            "wall_s": self.wall_s,
            "config": self.config,
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
            },
        }

    def save(self) -> None:
        if not self.d.main:
            return
        tmp = self.checkpoint_path.with_suffix(".part")
        torch.save(self.state(), tmp)
        os.replace(tmp, self.checkpoint_path)

    def resume(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        s = torch.load(self.checkpoint_path, map_location=self.d.device, weights_only=False)
        self.model.load_state_dict(s["model"])
        self.ema.model.load_state_dict(s["ema"])
        self.opt.load_state_dict(s["optimizer"])
        self.step = int(s["step"])
        self.wall_s = float(s.get("wall_s", 0.0))
        rng = s.get("rng", {})
        if "torch" in rng and self.d.world == 1:
            torch.set_rng_state(rng["torch"].cpu())
            random.setstate(rng["python"])
        if self.d.main:
            print(f"resumed {self.checkpoint_path} at step {self.step}", flush=True)
        return True

    def _log(self, row: dict[str, Any]) -> None:
        """Append to ``train.csv`` or ``valid.csv`` (by row kind); the header is the first row's."""
        path = self.run_dir / f"{row.pop('kind')}.csv"
        new = not path.exists()
        fields = list(row)
        if not new:
            with open(path, newline="") as fh:
                fields = next(csv.reader(fh))
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def fit(
        self,
        step_fn: Callable[[nn.Module, int], tuple[torch.Tensor, dict[str, float]]],
        validate_fn: Callable[[nn.Module], dict[str, float]] | None = None,
        steps: int | None = None,
        max_minutes: float | None = None,
        validate_every: int = 1000,
        log_every: int = 25,
        after_step: Callable[[int], None] | None = None,
    ) -> None:
        """Train until ``steps`` more steps, ``max_minutes``, total_steps, or a signal."""
        from tqdm import tqdm

        def handler(signum: int, frame: Any) -> None:
            self.stop_requested = True

        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        target = self.total if steps is None else min(self.total, self.step + steps)
        t_start = time.time()
        t_ckpt = time.time()
        bar = tqdm(total=target, initial=self.step, disable=not self.d.main, dynamic_ncols=True,
                   mininterval=5.0)
        acc: dict[str, float] = {}
        n_acc = 0
        try:
            while self.step < target and not self.stop_requested:
                t0 = time.time()
                for g in self.opt.param_groups:
                    g["lr"] = lr_at(self.step, self.lr, self.lr_min, self.warmup, self.total)
                self.train_model.train()
                loss, logs = step_fn(self.train_model, self.step)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {float(loss)} at step {self.step}")
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                gn = nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
                self.opt.step()
                self.ema.update(self.model, self.step)
                self.step += 1
                if after_step is not None:
                    after_step(self.step)
                dt = time.time() - t0
                self.wall_s += dt
                logs = {"loss": float(loss.detach()), "grad_norm": float(gn), **logs}
                for k, v in logs.items():
                    acc[k] = acc.get(k, 0.0) + v
                n_acc += 1
                bar.update(1)
                if self.step % log_every == 0 and n_acc:
                    mean = {k: v / n_acc for k, v in acc.items()}
                    bar.set_postfix(loss=f"{mean['loss']:.3f}", sps=f"{1 / max(dt, 1e-9):.2f}")
                    if self.d.main:
                        self._log({"step": self.step, "wall_s": round(self.wall_s, 1),
                                   "lr": self.opt.param_groups[0]["lr"], "kind": "train",
                                   **{k: round(v, 5) for k, v in mean.items()}})
                    acc, n_acc = {}, 0
                if validate_fn is not None and self.d.main and self.step % validate_every == 0:
                    v = validate_fn(self.ema.model)
                    self._log({"step": self.step, "wall_s": round(self.wall_s, 1), "kind": "valid",
                               **{k: round(x, 5) for k, x in v.items()}})
                    bar.write(f"step {self.step} valid " +
                              " ".join(f"{k}={x:.4g}" for k, x in v.items()))
                if time.time() - t_ckpt > self.checkpoint_every_s:
                    self.save()
                    t_ckpt = time.time()
                if max_minutes is not None and time.time() - t_start > max_minutes * 60:
                    break
        finally:
            bar.close()
            self.save()
            for s, h in old.items():
                signal.signal(s, h)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options every trainer takes: the run folder, how long, where, warm start and export."""
    p.add_argument("--run-dir", required=True,
                   help="run folder: checkpoint.pt, train.csv, valid.csv, config.json")
    p.add_argument("--steps", type=int, help="train this many more steps")
    p.add_argument("--total-steps", type=int, help="length of the cosine learning-rate schedule")
    p.add_argument("--lr-min", type=float,
                   help="learning rate at the end of the cosine schedule (with --total-steps: "
                        "a cool-down of a running or warm-started run)")
    p.add_argument("--max-minutes", type=float, help="stop (and checkpoint) after this long")
    p.add_argument("--batch", type=int, help="batch size per process")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--init", help="new runs: start from a weights file (see --save-weights)")
    p.add_argument("--save-weights", help="at the end, write EMA weights (float16) here")
    p.add_argument("--validate-every", type=int, help="steps between validations")


def apply_run_options(args: argparse.Namespace, train: Any) -> None:
    """Let the options of :func:`add_run_options` override a run's training settings.

    ``train`` is a trainer's settings dataclass (``batch_size``, ``threads``,
    ``validate_every``, ``total_steps``, ``lr_min``); options left out keep its values, so a
    resumed run keeps what it was started with unless told otherwise.
    """
    for option, field in (("batch", "batch_size"), ("threads", "threads"),
                          ("validate_every", "validate_every"),
                          ("total_steps", "total_steps"), ("lr_min", "lr_min")):
        value = getattr(args, option)
        if value is None:
            continue
        if value < 0 or (value == 0 and option != "lr_min"):
            flag = "--" + option.replace("_", "-")
            raise SystemExit(f"{flag} {value}: must be {'≥ 0' if option == 'lr_min' else '> 0'}")
        setattr(train, field, value)


def finish(trainer: Trainer, save_weights: str | None) -> None:
    """End of a run on the main process: the weights file for git, and where things are."""
    if not trainer.d.main:
        return
    if save_weights:
        trainer.save_weights(save_weights)
    print(f"stopped at step {trainer.step}; checkpoint {trainer.checkpoint_path}", flush=True)
