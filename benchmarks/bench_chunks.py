"""Cost of the streaming engine per chunk, window context and postfilter evaluations: the
latency/cost trade-off behind ``flowdec.stream.DEFAULT_CHUNK_MS``, ``DEFAULT_CONTEXT`` and
``LIVE_NFE``. Runs a :class:`flowdec.Stream` synchronously (``worker=False``, so the work is
timed without a real-time clock) over ``--seconds`` of the example clip in stereo at 48 kHz,
one chunk per ``process`` call, for each chunk length on the codec path and for each chunk ×
context × NFE with the postfilter; prints RTF (work time / audio time) and the latency the
same settings have with the worker thread (host blocks of 256 samples); writes
bench_out/chunks.json.

    python benchmarks/bench_chunks.py [--threads 1] [--chunks-ms 40 80 160]
        [--contexts 0 2 4] [--nfe 2 4 6] [--channels 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from pedalboard.io import AudioFile

from flowdec.audio import resample
from flowdec.codec import Codec, example_clip
from flowdec.stream import Stream
from results import save

RATE = 48000


def clip(seconds: float, channels: int) -> np.ndarray:
    with AudioFile(str(example_clip())) as f:
        audio, rate = f.read(f.frames), int(f.samplerate)
    x = resample(audio, rate, RATE)
    x = np.tile(x, (1, int(seconds * RATE) // x.shape[1] + 2))[:, : int(seconds * RATE)]
    return np.ascontiguousarray(x[np.arange(channels) % x.shape[0]], np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunks-ms", type=float, nargs="+", default=[40.0, 80.0, 160.0])
    ap.add_argument("--contexts", type=int, nargs="+", default=[0, 2, 4])
    ap.add_argument("--nfe", type=int, nargs="+", default=[2, 4, 6])
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=4.0)
    a = ap.parse_args()
    codec = Codec(threads=a.threads)
    x = clip(a.seconds, a.channels)
    rows = []
    print("chunk ms | path | context | NFE | RTF | latency ms (worker, 256-sample blocks)")
    settings = [(ms, None, None) for ms in a.chunks_ms]
    settings += [(ms, ctx, nfe) for ms in a.chunks_ms for ctx in a.contexts for nfe in a.nfe]
    for ms, ctx, nfe in settings:
        post = nfe is not None
        kw = {"nfe": nfe, "context": ctx} if post else {}
        s = Stream(codec, postfilter=post, chunk_ms=ms, worker=False, degrade=False,
                   **kw)  # type: ignore[arg-type]
        n = s.chunk
        s.prepare(RATE, n, a.channels)
        s.warm_up()
        t0 = time.perf_counter()
        for i in range(0, x.shape[1] - n + 1, n):
            s.process(x[:, i : i + n])
        rtf = (time.perf_counter() - t0) / (x.shape[1] // n * n / RATE)
        live = Stream(codec, postfilter=post, chunk_ms=ms, **kw)  # type: ignore[arg-type]
        live.prepare(RATE, 256, a.channels)
        live.close()
        r = {"chunk_ms": n * 1000 / RATE, "path": "postfilter" if post else "codec",
             "context": ctx, "nfe": nfe, "rtf": round(rtf, 3),
             "latency_ms": round(live.latency_samples * 1000 / RATE, 1)}
        rows.append(r)
        print(f"{r['chunk_ms']:g} | {r['path']} | {ctx if post else '–'} | "
              f"{nfe if post else '–'} | {r['rtf']} | {r['latency_ms']}", flush=True)
    save("bench_out/chunks.json", {"threads": a.threads, "channels": a.channels,
                                   "seconds": a.seconds, "rows": rows})


if __name__ == "__main__":
    main()
