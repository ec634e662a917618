"""Does bfloat16 autocast speed up the codec's training steps on this CPU, and at what cost?

One codec training step (batch of 1 s crops of the example clip, forward + losses +
backward, fixed weights: no optimizer step, so every row sees the same model) in float32 and
with ``torch.autocast("cpu", torch.bfloat16)`` around the model's forward pass (the losses
stay float32), interleaved so machine load hits both alike. Reports the median step time,
the loss terms of each, and the cosine between the two gradients.

    python benchmarks/bench_bf16_training.py --weights weights/codec_next.pt [--repeat 7]

Prints a table and writes JSON (default ``bench_out/bf16_training.json``).
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

import numpy as np
import torch
from pedalboard.io import AudioFile

from flowdec.audio import resample
from flowdec.codec import example_clip
from flowdec.train.codec_model import Codec
from flowdec.train.config import CodecRun
from flowdec.train.losses import CodecLoss
from results import save


def crops(batch: int, seconds: float) -> torch.Tensor:
    with AudioFile(str(example_clip())) as f:
        audio, rate = f.read(f.frames), int(f.samplerate)
    x = resample(audio.mean(0, keepdims=True), rate, 48000)[0]
    n = int(seconds * 48000) // 640 * 640
    starts = np.linspace(0, len(x) - n, batch).astype(int)
    return torch.from_numpy(np.stack([x[s : s + n] for s in starts])).float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="weights/codec_next.pt", help="codec weights file")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench_out/bf16_training.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    w = torch.load(args.weights, map_location="cpu", weights_only=False)
    cfg = CodecRun.from_dict(w["config"])
    model = Codec(cfg.model)
    model.load_state_dict({k: v.float() for k, v in w["state"].items()})
    model.train()
    loss_fn = CodecLoss(cfg.loss, cfg.model.sample_rate)
    x = crops(args.batch, 1.0)
    n_q = torch.full((args.batch,), cfg.model.n_codebooks)

    def step(bf16: bool) -> tuple[float, dict[str, float], torch.Tensor]:
        torch.manual_seed(0)  # the same quantizer draws in both
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x, n_q)
        loss, parts = loss_fn(out["audio"].float(), x, out["commit"].float(),
                              out["codebook"].float())
        model.zero_grad(set_to_none=True)
        loss.backward()
        dt = time.perf_counter() - t0
        grad = torch.cat([q.grad.flatten() for q in model.parameters() if q.grad is not None])
        return dt, {"loss": float(loss.detach()), **parts}, grad

    times: dict[bool, list[float]] = {False: [], True: []}
    last: dict[bool, tuple[dict[str, float], torch.Tensor]] = {}
    for i in range(args.repeat + 1):
        for bf16 in (False, True):
            dt, parts, grad = step(bf16)
            if i:  # the first round warms up
                times[bf16].append(dt)
            last[bf16] = (parts, grad)
    cos = float(torch.nn.functional.cosine_similarity(last[False][1], last[True][1], dim=0))
    rows: list[dict[str, Any]] = []
    for bf16 in (False, True):
        rows.append({"precision": "bf16 autocast" if bf16 else "float32",
                     "step_s": float(np.median(times[bf16])), **last[bf16][0]})
    print(f"codec step, batch {args.batch} x 1 s, {args.threads} threads, "
          f"step {w.get('step')} weights")
    print(f"{'precision':<14} {'step s':>7} {'loss':>7} {'mel':>7} {'spec':>7} {'wave':>7}")
    for r in rows:
        print(f"{r['precision']:<14} {r['step_s']:7.3f} {r['loss']:7.3f} {r['mel']:7.4f} "
              f"{r['spec']:7.4f} {r['wave']:7.4f}")
    print(f"speed-up {rows[0]['step_s'] / rows[1]['step_s']:.2f}x; gradient cosine {cos:.3f}")
    save(args.out, {"rows": rows, "gradient_cosine": cos, "batch": args.batch,
                    "threads": args.threads, "weights_step": w.get("step"),
                    "machine": f"{platform.machine()} ({torch.get_num_threads()} threads)"})


if __name__ == "__main__":
    main()
