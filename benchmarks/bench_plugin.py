"""Benchmark the flowdec VST3 plugin and its backend (needs plugin/build.sh).

1. Time inside ``processBlock`` (mean / p99 / max µs) per host block size, in forced
   real-time mode (the plugin never waits there), measured by the plugin itself
   (``FLOWDEC_PLUGIN_TIMING``), against a delay-engine backend.
2. IPC round trip per chunk (push a 1920-sample stereo chunk, ring the doorbell, wait for the
   backend's output) with a Python client on the real protocol and a delay-engine backend.
3. End-to-end real-time factor (wall time / audio time, lower is better) with 1, 2 and 4
   plugin instances rendering offline at once through one codec backend (one model), with
   their network calls joined into batches (--batch on) and run in parallel
   on separate threads (--batch off, the CPU default).

Prints a table and writes ``bench_out/plugin.json``.

    python benchmarks/bench_plugin.py [--model DIR] [--seconds 4] [--postfilter]
"""

from __future__ import annotations

import argparse
import gc
import glob
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from results import save  # noqa: E402
from test_plugin_common import VST3, PyClient, start_backend, stop  # noqa: E402

RATE = 48000


def stats_us(v: np.ndarray) -> dict[str, float]:
    return {"mean_us": float(v.mean()), "p99_us": float(np.percentile(v, 99)),
            "max_us": float(v.max()), "n": int(v.size)}


def bench_process_block(sock: Path, seconds: float) -> dict[str, dict[str, float]]:
    import pedalboard

    out: dict[str, dict[str, float]] = {}
    tdir = Path(tempfile.mkdtemp(prefix="fdt"))
    os.environ["FLOWDEC_PLUGIN_TIMING"] = str(tdir / "t")
    x = (0.1 * np.random.default_rng(0).standard_normal((2, int(seconds * RATE)))).astype(
        np.float32)
    for block in (64, 512, 4096):
        p = pedalboard.load_plugin(str(VST3))  # type: ignore[attr-defined]
        p.force_realtime = True  # type: ignore[attr-defined]  # a plugin parameter
        for i in range(0, x.shape[1], block * 64):  # roughly paced: backend keeps up
            p.process(x[:, i:i + block * 64], RATE, buffer_size=block, reset=False)
        del p
        gc.collect()
        vals = []
        for f in glob.glob(str(tdir / "t.*.txt")):
            rows = np.loadtxt(f, ndmin=2)
            vals.append(rows[rows[:, 0] == block, 1])
            os.unlink(f)
        v = np.concatenate(vals) if vals else np.zeros(1)
        out[str(block)] = stats_us(v[10:] if v.size > 20 else v)
    del os.environ["FLOWDEC_PLUGIN_TIMING"]
    shutil.rmtree(tdir, ignore_errors=True)
    return out


def bench_ipc(sock: Path, n: int) -> dict[str, float]:
    c = PyClient(sock, channels=2, chunk=1920)
    x = np.zeros((2, 1920), np.float32)
    times = []
    for k in range(n):
        t0 = time.perf_counter_ns()
        assert c.roundtrip(k, x) is not None
        times.append((time.perf_counter_ns() - t0) / 1000)
    c.close()
    return stats_us(np.asarray(times[20:]))


def bench_rtf(model: str, seconds: float, postfilter: bool, batch: bool) -> dict[str, float]:
    import pedalboard

    d = Path(tempfile.mkdtemp(prefix="fdb", dir="/tmp"))
    sock = d / "b.sock"
    os.environ["FLOWDEC_SOCKET"] = str(sock)
    proc = start_backend(sock, engine="stream", model=model,
                         extra=("--batch", "on" if batch else "off"))
    res: dict[str, float] = {}
    try:
        x = (0.1 * np.random.default_rng(1).standard_normal((2, int(seconds * RATE)))).astype(
            np.float32)
        for n in (1, 2, 4):
            plugins = [pedalboard.load_plugin(str(VST3))  # type: ignore[attr-defined]
                       for _ in range(n)]
            for p in plugins:
                p.postfilter = postfilter  # type: ignore[attr-defined]  # a plugin parameter
                p.process(x[:, :4800], RATE, buffer_size=512)  # connect, warm up

            def render(p: pedalboard.ExternalPlugin) -> None:
                p.process(x, RATE, buffer_size=512)

            threads = [threading.Thread(target=render, args=(p,)) for p in plugins]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            res[str(n)] = (time.perf_counter() - t0) / seconds
            del plugins
            gc.collect()
    finally:
        stop(proc)
        shutil.rmtree(d, ignore_errors=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.environ.get("FLOWDEC_TEST_MODEL", "/work/testmodel"))
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--postfilter", action="store_true", help="end-to-end with the postfilter")
    ap.add_argument("--out", default=str(REPO / "bench_out" / "plugin.json"))
    args = ap.parse_args()
    if not VST3.exists():
        print(f"plugin not built ({VST3}): run plugin/build.sh", file=sys.stderr)
        return 1
    d = Path(tempfile.mkdtemp(prefix="fdb", dir="/tmp"))
    sock = d / "b.sock"
    os.environ["FLOWDEC_SOCKET"] = str(sock)
    os.environ["FLOWDEC_BACKEND_CMD"] = shlex.join(["false"])
    proc = start_backend(sock, engine="delay:0")
    try:
        blocks = bench_process_block(sock, args.seconds)
        ipc = bench_ipc(sock, 2000)
    finally:
        stop(proc)
        shutil.rmtree(d, ignore_errors=True)
    rtf = {mode: bench_rtf(args.model, args.seconds, args.postfilter, mode == "batched")
           for mode in ("batched", "separate")}
    result = {"process_block": blocks, "ipc_roundtrip_1920": ipc, "rtf_offline": rtf,
              "postfilter": args.postfilter, "seconds": args.seconds, "model": args.model,
              "cpu_count": os.cpu_count()}
    print("processBlock (forced real time, delay backend), µs:")
    print(f"{'block':>6} {'mean':>8} {'p99':>8} {'max':>8}")
    for b, s in blocks.items():
        print(f"{b:>6} {s['mean_us']:8.1f} {s['p99_us']:8.1f} {s['max_us']:8.1f}")
    print(f"IPC round trip per 1920-sample stereo chunk: mean {ipc['mean_us']:.1f} µs, "
          f"p99 {ipc['p99_us']:.1f} µs, max {ipc['max_us']:.1f} µs")
    for mode, r in rtf.items():
        print(f"end-to-end RTF (offline renders at once, one backend, {mode} network calls): "
              + ", ".join(f"{k} instance(s) {v:.2f}" for k, v in r.items()))
    save(args.out, result, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
