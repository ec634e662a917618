"""Streaming engine benchmark: latency, worker real-time factor, caller time, under-runs.

For each host block size and chunk size, a :class:`flowdec.Stream` (worker thread) is driven
by a simulated real-time clock (``process`` is called when the block's audio would have
arrived) for ``--seconds`` of audio. Prints a table and writes JSON (bench_out/stream.json).

``--live``: instead, ``flowdec live``'s file path (a :class:`flowdec.live.LiveSession` from a
generated file to a file at real-time pace, default settings) at 48 kHz mono and 44.1 kHz
stereo: whether the engine keeps real time on this machine (under-runs, dropped chunks),
which the tests do not assert (bench_out/stream_live.json).

    python benchmarks/bench_stream.py --seconds 60 --model /work/testmodel
    python benchmarks/bench_stream.py --live --seconds 10 --no-postfilter
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from flowdec.codec import Codec
from flowdec.stream import Stream
from pacing import process_in_real_time
from results import save


def run(codec: Codec, block: int, chunk_ms: float, seconds: float, sr: int, postfilter: bool,
        nfe: int, context: int) -> dict[str, float | int | str]:
    s = Stream(codec, postfilter=postfilter, nfe=nfe, chunk_ms=chunk_ms, worker=True,
               degrade=True, context=context)
    s.prepare(sr, block, 1)
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((1, sr))).astype(np.float32)
    times = process_in_real_time(s, x, block, seconds, sr)
    s.close()
    st = s.stats
    us = times * 1e6
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


def run_live(codec: Codec, sr: int, channels: int, seconds: float, postfilter: bool,
             nfe: int) -> dict[str, float | int | str]:
    import tempfile
    from pathlib import Path

    import soundfile as sf

    from flowdec.live import LiveSession

    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 330 * t) * np.sin(2 * np.pi * 2 * t)
    x = (x + 0.05 * rng.standard_normal((channels, t.size))).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in.wav"
        sf.write(src, x.T, sr, subtype="FLOAT")
        session = LiveSession(codec, input_file=src, output_file=Path(d) / "out.wav",
                              postfilter=postfilter, nfe=nfe if postfilter else None)
        t0 = time.perf_counter()
        r = session.run()
        wall = time.perf_counter() - t0
    st = r.status
    return {
        "input": f"file {sr} Hz {channels} ch", "postfilter": f"nfe{nfe}" if postfilter else "off",
        "latency_ms": round(1000 * r.latency_samples / sr, 1),
        "worker_rtf": round(r.rtf_overall, 3),
        "wall_per_audio_s": round(wall / (st.seconds or 1.0), 3),
        "underrun_blocks": st.underrun_blocks,
        "underrun_ms": round(1000 * st.underrun_seconds, 1),
        "dropped_chunks": st.dropped_chunks, "xruns": st.xruns,
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
    ap.add_argument("--live", action="store_true",
                    help="flowdec live's file path at 48 kHz mono and 44.1 kHz stereo instead")
    ap.add_argument("--out", default=None,
                    help="JSON (default bench_out/stream.json, with --live stream_live.json)")
    a = ap.parse_args()
    codec = Codec(a.model, threads=a.threads)
    rows = []
    if a.live:
        head: tuple[str, ...] = ("input", "postfilter", "latency_ms", "worker_rtf",
                                 "wall_per_audio_s", "underrun_blocks", "underrun_ms",
                                 "dropped_chunks", "xruns")
        print(" | ".join(head))
        for sr, channels in ((48000, 1), (44100, 2)):
            r = run_live(codec, sr, channels, a.seconds, not a.no_postfilter, a.nfe)
            rows.append(r)
            print(" | ".join(str(r[k]) for k in head), flush=True)
        save(a.out or "bench_out/stream_live.json",
             {"seconds": a.seconds, "model": str(codec.folder), "rows": rows})
        return
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
    save(a.out or "bench_out/stream.json",
         {"seconds": a.seconds, "model": str(codec.folder), "rows": rows})


if __name__ == "__main__":
    main()
