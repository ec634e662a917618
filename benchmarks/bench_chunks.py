"""Cost of the streaming engine per chunk size: the latency/cost trade-off behind
``flowdec.stream.DEFAULT_POSTFILTER_CHUNK_MS``. Runs a :class:`flowdec.Stream` synchronously
(``worker=False``) over 4 s of stereo noise for each chunk size, codec path and NFE 6; prints
RTF and latency, writes bench_out/chunks.json.

    python benchmarks/bench_chunks.py [--threads 1] [--chunks-ms 40 80 160]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from flowdec.codec import Codec
from flowdec.stream import Stream
from results import save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunks-ms", type=float, nargs="+", default=[40.0, 80.0, 160.0])
    ap.add_argument("--seconds", type=float, default=4.0)
    a = ap.parse_args()
    codec = Codec(threads=a.threads)
    n_total = int(48000 * a.seconds)
    x = (0.1 * np.random.default_rng(0).standard_normal((2, n_total))).astype(np.float32)
    rows = []
    print("chunk ms | path | RTF | latency ms")
    for ms in a.chunks_ms:
        for post in (False, True):
            s = Stream(codec, postfilter=post, nfe=6, chunk_ms=ms, worker=False, degrade=False)
            n = int(48 * ms)
            s.prepare(48000, n, 2)
            s.process(x[:, :n])  # warm up
            t0 = time.perf_counter()
            for i in range(0, n_total, n):
                s.process(x[:, i:i + n])
            r = {"chunk_ms": ms, "path": "nfe6" if post else "codec",
                 "rtf": round((time.perf_counter() - t0) / a.seconds, 3),
                 "latency_ms": round(s.latency_samples / 48, 1)}
            rows.append(r)
            print(f"{ms:g} | {r['path']} | {r['rtf']} | {r['latency_ms']}", flush=True)
    save("bench_out/chunks.json", {"threads": a.threads, "rows": rows})


if __name__ == "__main__":
    main()
