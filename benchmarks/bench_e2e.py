"""End-to-end benchmark: real-time factor per stage and per NFE, 1 and 2 threads.

    python benchmarks/bench_e2e.py [--model DIR] [--seconds 10] [--repeat 2] [--out FILE]

RTF = wall seconds / audio seconds (lower is faster; best of ``--repeat``), 48 kHz mono.
Rows: encoder, decoder (onnxruntime), Φ, one postfilter network evaluation, the solver
kernels of a whole NFE-6 solve (noise init + midpoint steps, network replaced by a no-op),
Φ⁻¹, and end to end (``Codec.roundtrip``) with the postfilter off (also with 24 band gains)
and at NFE 2/6/10. The alternative a user would pick: the same postfilter network
(architecture from the model card, same shapes and FLOPs) run in PyTorch eager on the CPU,
if torch imports. GPU rows
when onnxruntime has the CUDA provider. Writes JSON (default ``bench_out/e2e.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from results import save

RATE = 48000


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def model_folder(arg: str | None) -> Path:
    from flowdec.model.files import resolve

    if arg:
        return Path(arg)
    try:
        return Path(resolve(None))
    except Exception:
        return Path("/work/testmodel")


def bench_device(folder: Path, device: str, threads: int, seconds: float, repeat: int
                 ) -> list[dict[str, Any]]:
    from flowdec.codec import Codec
    from flowdec.dsp import features, solver

    codec = Codec(folder, device=device, threads=threads)
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((1, int(seconds * RATE)))).astype(np.float32)
    rows: list[dict[str, Any]] = []

    def add(stage: str, sec: float) -> None:
        rows.append({"device": device, "threads": threads, "stage": stage,
                     "rtf": sec / seconds, "impl": "flowdec"})
        print(f"{device:4} {threads}  {stage:28} RTF {sec / seconds:8.4f}", flush=True)

    codes = codec.encoder(x)
    add("encoder", best(lambda: codec.encoder(x), repeat))
    add("decoder", best(lambda: codec.decoder(codes), repeat))
    if codec.has_postfilter:
        cfg = codec.stft_config()
        y = codec.decoder(codes).reshape(1, -1)[:, : x.shape[1]]
        Y = features.analysis(y, cfg)
        m = codec.post_card.frames_multiple if codec.post_card else 1  # type: ignore[union-attr]
        n = Y.shape[-1] // m * m
        Yn = np.ascontiguousarray(Y[..., :n])
        net = codec.postfilter_net
        assert net is not None
        add("phi (analysis)", best(lambda: features.analysis(y, cfg), repeat))
        add("postfilter eval x1", best(lambda: net(Yn, Yn, 0.5), repeat))
        sig = np.asarray(codec.post_card.sigma_y, np.float32)  # type: ignore[union-attr]
        add("solver kernels (nfe 6)", best(
            lambda: solver.midpoint_solve(Yn, sig, lambda X, Y_, t: np.zeros_like(X), nfe=6),
            repeat))
        add("phi^-1 (synthesis)", best(lambda: features.synthesis(Y, y.shape[1], cfg), repeat))
    add("end to end, no postfilter", best(
        lambda: codec.roundtrip(x, RATE, 6.0, postfilter=False), repeat))
    add("end to end, no postfilter, 24 band gains", best(
        lambda: codec.roundtrip(x, RATE, 6.0, postfilter=False, level_bands=24), repeat))
    if codec.has_postfilter:
        for nfe in (2, 6, 10):
            add(f"end to end, nfe {nfe}", best(
                partial(codec.roundtrip, x, RATE, 6.0, nfe=nfe, seed=0, postfilter=True),
                repeat))
    return rows


def bench_torch(folder: Path, threads: int, seconds: float, repeat: int) -> list[dict[str, Any]]:
    try:
        import torch

        from flowdec.train.postfilter_model import PostfilterConfig, PostfilterNet
    except ImportError as e:
        print(f"torch alternative skipped: {e}")
        return []
    card = json.loads((folder / "model_card.json").read_text()).get("postfilter")
    if not card:
        return []
    fields = PostfilterConfig.__dataclass_fields__
    cfg = PostfilterConfig(**{k: v for k, v in card["config"].items() if k in fields})
    net = PostfilterNet(cfg).eval()
    torch.set_num_threads(threads)
    frames = int(seconds * RATE) // cfg.hop + 1
    frames = frames // cfg.patch_t * cfg.patch_t
    X = torch.randn(1, 2, cfg.n_freq, frames)
    t = torch.full((1,), 0.5)
    with torch.inference_mode():
        net(X, X, t)
        sec = best(lambda: net(X, X, t), repeat)
    print(f"cpu  {threads}  {'postfilter eval x1 (torch)':28} RTF {sec / seconds:8.4f}")
    return [{"device": "cpu", "threads": threads, "stage": "postfilter eval x1",
             "rtf": sec / seconds, "impl": f"torch {torch.__version__} eager"}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default="bench_out/e2e.json")
    args = ap.parse_args()
    import onnxruntime as ort

    folder = model_folder(args.model)
    rows: list[dict[str, Any]] = []
    for th in args.threads:
        rows += bench_device(folder, "cpu", th, args.seconds, args.repeat)
        rows += bench_torch(folder, th, args.seconds, args.repeat)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        rows += bench_device(folder, "cuda", 1, args.seconds, args.repeat)
    print("\n| device | threads | stage | impl | RTF |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['threads']} | {r['stage']} | {r['impl']} | {r['rtf']:.4f} |")
    save(args.out, {"machine": f"{platform.machine()} {platform.processor()}",
                    "model": str(folder), "seconds": args.seconds,
                    "onnxruntime": ort.__version__, "rows": rows}, indent=2)


if __name__ == "__main__":
    main()
