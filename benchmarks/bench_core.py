"""Benchmark of the C++ core: Φ / Φ⁻¹ vs torch and numpy.fft, solver kernels vs memcpy.

Prints a table and writes JSON (default ``bench_out/core.json``).

    python benchmarks/bench_core.py [--out PATH] [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from flowdec.dsp import features as ft
from flowdec.dsp import reference as ref
from flowdec.dsp import solver
from results import save

SR = 48000
CFG = ft.STFTConfig()


def best_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm up (plans, page faults)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def torch_fns(x: np.ndarray) -> tuple[Callable[[], Any], Callable[[], Any]] | None:
    try:
        import torch
    except ImportError:
        return None
    xt = torch.from_numpy(x)
    win = torch.hann_window(CFG.n_fft)
    length = x.shape[1]

    def fwd() -> Any:
        spec = torch.stft(xt, CFG.n_fft, CFG.hop, window=win, center=True,
                          pad_mode="constant", return_complex=True)
        mag = spec.abs()
        comp = torch.polar(CFG.beta * mag**CFG.alpha, spec.angle())
        return torch.view_as_real(comp).permute(0, 3, 1, 2).contiguous()

    feats = fwd()

    def inv() -> Any:
        c = torch.view_as_complex(feats.permute(0, 2, 3, 1).contiguous())
        mag = c.abs()
        spec = torch.polar((mag / CFG.beta) ** (1 / CFG.alpha), c.angle())
        return torch.istft(spec, CFG.n_fft, CFG.hop, window=win, center=True, length=length)

    return fwd, inv


def bench_stft(repeat: int, quick: bool) -> list[dict[str, Any]]:
    rows = []
    try:
        import torch
    except ImportError:
        torch = None  # type: ignore[assignment]
    for batch in (1, 16):
        seconds = 10.0
        x = np.random.default_rng(0).standard_normal((batch, int(seconds * SR))).astype(np.float32)
        audio_s = batch * seconds
        X = ft.analysis(x)
        tf = torch_fns(x)
        run_np = not quick or batch == 1
        np_fwd = best_time(partial(ref.stft_ref, x), 1) if run_np else None
        np_inv = best_time(partial(ref.istft_ref, X, x.shape[1]), 1) if run_np else None
        for threads in (1, 2):
            ft.set_num_threads(threads)
            if torch is not None:
                torch.set_num_threads(threads)
            ours_f = best_time(partial(ft.analysis, x), repeat)
            ours_i = best_time(partial(ft.synthesis, X, x.shape[1]), repeat)
            t_f = best_time(tf[0], repeat) if tf else None
            t_i = best_time(tf[1], repeat) if tf else None
            cases = (("phi", ours_f, t_f, np_fwd), ("phi_inv", ours_i, t_i, np_inv))
            for op, ours, t, npy in cases:
                rows.append({
                    "op": op, "batch": batch, "seconds": seconds, "threads": threads,
                    "flowdec_x_realtime": audio_s / ours,
                    "torch_x_realtime": audio_s / t if t else None,
                    "numpy_x_realtime": audio_s / npy if npy else None,
                    "ratio_vs_torch": (t / ours) if t else None,
                })
    ft.set_num_threads(1)
    return rows


def bench_kernels(repeat: int, mbytes: int) -> list[dict[str, Any]]:
    F = CFG.n_freq
    N = max(1, mbytes * 2**20 // (4 * 2 * F))
    shape = (1, 2, F, N)
    rng = np.random.default_rng(0)
    X = rng.standard_normal(shape).astype(np.float32)
    k = rng.standard_normal(shape).astype(np.float32)
    out = np.empty_like(X)
    sigma = np.full(F, 0.3, np.float32)
    nbytes = X.nbytes
    rows = []
    for threads in (1, 2):
        ft.set_num_threads(threads)
        copy_t = best_time(lambda: np.copyto(out, X), repeat)
        copy_bw = 2 * nbytes / copy_t  # read + write
        cases = {
            # bytes moved per call
            "midpoint_half_step": (lambda: solver.midpoint_half_step(X, k, 0.1, out=out), 3),
            "euler_step (in place)": (lambda: solver.euler_step(X, k, 1e-9), 3),
            "noise_init": (lambda: solver.noise_init(X, sigma, 1, out=out), 2),
        }
        for name, (fn, factor) in cases.items():
            t = best_time(fn, repeat)
            bw = factor * nbytes / t
            rows.append({"kernel": name, "threads": threads, "MB": nbytes / 2**20,
                         "GB_per_s": bw / 1e9, "copy_GB_per_s": copy_bw / 1e9,
                         "fraction_of_copy": bw / copy_bw})
    ft.set_num_threads(1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench_out/core.json")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mbytes", type=int, default=64, help="kernel tensor size (MB)")
    parser.add_argument("--quick", action="store_true", help="skip the slow numpy batch rows")
    args = parser.parse_args()

    stft_rows = bench_stft(args.repeat, args.quick)
    kernel_rows = bench_kernels(args.repeat, args.mbytes)

    def fmt(v: float | None) -> str:
        return f"{v:9.1f}" if v is not None else "        -"

    print("Φ / Φ⁻¹ throughput, seconds of 48 kHz audio per second (higher is better)")
    head = ("op", "batch", "thr", "flowdec", "torch", "numpy", "vs torch")
    print(f"{head[0]:8} {head[1]:>5} {head[2]:>3} " + " ".join(f"{h:>9}" for h in head[3:]))
    for r in stft_rows:
        ratio = f"{r['ratio_vs_torch']:7.2f}x" if r["ratio_vs_torch"] else "       -"
        print(f"{r['op']:8} {r['batch']:5d} {r['threads']:3d} {fmt(r['flowdec_x_realtime'])} "
              f"{fmt(r['torch_x_realtime'])} {fmt(r['numpy_x_realtime'])} {ratio}")
    print(f"\nSolver kernels on {kernel_rows[0]['MB']:.0f} MB tensors (GB/s moved)")
    print(f"{'kernel':24} {'thr':>3} {'GB/s':>7} {'copy':>7} {'of copy':>8}")
    for r in kernel_rows:
        print(f"{r['kernel']:24} {r['threads']:3d} {r['GB_per_s']:7.2f} {r['copy_GB_per_s']:7.2f} "
              f"{100 * r['fraction_of_copy']:7.0f}%")

    meta = {"machine": platform.machine(), "processor": platform.processor(),
            "python": platform.python_version(), "numpy": np.__version__}
    save(args.out, {"meta": meta, "stft": stft_rows, "kernels": kernel_rows})


if __name__ == "__main__":
    main()
