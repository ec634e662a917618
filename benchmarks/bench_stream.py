"""Streaming engine benchmark: latency, worker real-time factor, caller time, under-runs.

For each host block size and chunk size, a :class:`flowdec.Stream` (worker thread) is driven
by a simulated real-time clock (``process`` is called when the block's audio would have
arrived) for ``--seconds`` of audio. Prints a table and writes JSON (bench_out/stream.json).

    python benchmarks/bench_stream.py --seconds 60 --model /work/testmodel
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from flowdec.codec import Codec
from flowdec.stream import Stream
from results import save


def run(codec: Codec, block: int, chunk_ms: float, seconds: float, sr: int, postfilter: bool,
        nfe: int, context: int) -> dict[str, float | int | str]:
    s = Stream(codec, postfilter=postfilter, nfe=nfe, chunk_ms=chunk_ms, worker=True,
               degrade=True, context=context)
    s.prepare(sr, block, 1)
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((1, sr))).astype(np.float32)
    out = np.empty((1, block), np.float32)
    times = []
    t0 = time.perf_counter()
    done = 0
    while done < seconds * sr:
        i = done % (sr - block)
        c0 = time.perf_counter()
        s.process(x[:, i : i + block], out)
        times.append(time.perf_counter() - c0)
        done += block
        wait = t0 + done / sr - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    s.close()
    st = s.stats
    us = np.asarray(times) * 1e6
    return {
        "block": block, "chunk_ms": s.chunk / 48, "sample_rate": sr,
        "postfilter": f"nfe{nfe}" if postfilter else "off",
        "latency_ms": round(1000 * s.latency_samples / sr, 1),
        "worker_rtf": round(st.rtf, 3),
        "process_us_mean": round(float(us.mean()), 1),
        "process_us_p99": round(float(np.percentile(us, 99)), 1),
        "process_us_max": round(float(us.max()), 1),
        "underrun_samples": st.underrun_samples, "underrun_blocks": st.underrun_blocks,
        "chunks": st.chunks, "dropped_chunks": st.dropped_chunks,
        "degradations": st.degradations, "final_level": st.level,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--blocks", type=int, nargs="+", default=[64, 256, 1024, 4096])
    ap.add_argument("--chunks-ms", type=float, nargs="+", default=[160.0, 320.0])
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--nfe", type=int, default=6)
    ap.add_argument("--context", type=int, default=4)
    ap.add_argument("--no-postfilter", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="onnxruntime threads (default 1, as flowdec live uses)")
    ap.add_argument("--out", default="bench_out/stream.json")
    a = ap.parse_args()
    codec = Codec(a.model, threads=a.threads)
    rows = []
    head = ("block", "chunk_ms", "postfilter", "latency_ms", "worker_rtf", "process_us_mean",
            "process_us_p99", "process_us_max", "underrun_samples", "dropped_chunks",
            "final_level")
    print(" | ".join(head))
    for chunk in a.chunks_ms:
        for block in a.blocks:
            r = run(codec, block, chunk, a.seconds, a.rate, not a.no_postfilter, a.nfe,
                    a.context)
            rows.append(r)
            print(" | ".join(str(r[k]) for k in head), flush=True)
    save(a.out, {"seconds": a.seconds, "model": str(codec.folder), "rows": rows})


if __name__ == "__main__":
    main()
