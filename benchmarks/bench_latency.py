"""Latency benchmark: flowdec.Stream at real time — worker RTF, caller p99, latency, under-runs.

For each setting (chunk length, encoder), path (codec, postfilter), channel count and host
block size, a :class:`flowdec.Stream` with its worker thread is driven by a real-time clock
(``process`` is called when the block's audio would have arrived, as an audio callback is)
for ``--seconds`` of music (the example clip, looped) at 48 kHz. Reported per row: the
stream's ``latency_samples`` (ms) and the latency measured with an impulse (same settings,
the worker given time to catch up after each block: the lag at which the output matches the
offline round trip of an impulse),
worker real-time factor (model time / audio time), the caller's ``process`` time (mean, p99,
max, µs), under-run samples, dropped chunks and degradation steps. Prints a table and writes
JSON (bench_out/latency.json).

``--encoder stream`` runs the streaming encoder (:mod:`flowdec.pipeline.stream_encoder`,
each hop encoded once), ``plain`` the re-running
:class:`flowdec.pipeline.stages.EncoderStage`, ``model`` what the model's ``encoder_stage``
gives. ``--codes`` also counts the codes the streaming encoder moves against
``Codec.encode`` on the example clip.

    python benchmarks/bench_latency.py                       # defaults: 60 s per row, 12 rows
    python benchmarks/bench_latency.py --seconds 20 --chunks-ms 160 80 --encoders plain stream

Without ``--chunks-ms``, ``--nfe`` and ``--context`` each path runs at the stream's defaults
(40-ms chunks; with the postfilter ``LIVE_NFE`` evaluations and ``DEFAULT_CONTEXT`` frames of
window context); a chunk is rounded up to a multiple of 40 ms.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
from pedalboard.io import AudioFile

from flowdec.audio import resample
from flowdec.codec import Codec, example_clip
from flowdec.format.bitstream import LIVE_FRAMES_PER_GAIN
from flowdec.pipeline.stages import EncoderStage
from flowdec.pipeline.stream_encoder import (
    StreamingEncoderStage,
    encode_offline,
    load_stream_encoder,
)
from flowdec.stream import Stream
from pacing import process_in_real_time
from results import save

RATE = 48000


def use_encoder(codec: Codec, kind: str) -> None:
    """Make ``codec``'s stages use the ``kind`` encoder (an instance attribute shadows the
    factory method the engine calls)."""
    if "encoder_stage" in vars(codec):
        del codec.encoder_stage  # type: ignore[method-assign]
    if kind == "model":
        return
    if kind == "plain":
        def plain(channels: int, chunk_frames: int | None) -> EncoderStage:
            return EncoderStage(codec.encoder, codec.card, channels, chunk_frames)
        codec.encoder_stage = plain  # type: ignore[method-assign,assignment]
        return
    net = load_stream_encoder(codec.folder, codec.device, codec.threads)
    if net is None:
        raise SystemExit(f"{codec.folder} has no streaming encoder (encoder_stream.onnx): add "
                         "it with python -m flowdec.train.export stream")

    def streaming(channels: int, chunk_frames: int | None) -> StreamingEncoderStage:
        return StreamingEncoderStage(net, codec.card, channels, chunk_frames)
    codec.encoder_stage = streaming  # type: ignore[method-assign,assignment]


def music(seconds: float, channels: int) -> np.ndarray:
    """The example clip at 48 kHz, looped to ``seconds``, ``channels`` channels."""
    with AudioFile(str(example_clip())) as f:
        audio, rate = f.read(f.frames), int(f.samplerate)
    x = resample(audio, rate, RATE)
    x = np.tile(x, (1, int(seconds * RATE) // x.shape[1] + 1))[:, : int(seconds * RATE)]
    if channels == 1:
        return np.ascontiguousarray(x.mean(0, keepdims=True), np.float32)
    return np.ascontiguousarray(x[np.arange(channels) % x.shape[0]], np.float32)


def impulse_latency(codec: Codec, block: int, channels: int, **settings: Any) -> int:
    """Samples between an impulse going in and the matching output coming out: the lag that
    best aligns the stream's output with the offline round trip (the worker thread, given
    time to catch up after each block, so the measurement does not depend on speed)."""
    s = Stream(codec, worker=True, degrade=False, **settings)
    s.prepare(RATE, block, channels)
    lat = s.latency_samples
    n = RATE // 2
    x = np.zeros((channels, n), np.float32)
    x[:, n // 4] = 0.5
    ref = codec.roundtrip(x, RATE, s.bitrate, postfilter=s.postfilter, nfe=s.nfe, seed=s.seed,
                          frames_per_gain=LIVE_FRAMES_PER_GAIN)[0]
    full = np.pad(x, ((0, 0), (0, 2 * lat + RATE // 4)))
    out = []
    for i in range(0, full.shape[1] - block + 1, block):
        out.append(s.process(full[:, i : i + block]))
        while not s.caught_up():
            time.sleep(0.0005)
    s.close()
    y = np.concatenate(out, axis=1)[0]
    size = 1 << int(np.ceil(np.log2(y.size + ref.size)))
    xc = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(ref, size)), size)
    return int(np.argmax(xc[: y.size]))


def run(codec: Codec, block: int, channels: int, seconds: float,
        **settings: Any) -> dict[str, Any]:
    s = Stream(codec, worker=True, degrade=True, **settings)
    s.prepare(RATE, block, channels)
    s.warm_up()
    x = music(min(seconds, 20.0), channels)
    times = process_in_real_time(s, x, block, seconds, RATE)
    s.close()
    st = s.stats
    us = times * 1e6
    return {
        "latency_ms": round(1000 * s.latency_samples / RATE, 1),
        "latency_samples": s.latency_samples,
        "worker_rtf": round(st.rtf, 3),
        "process_us_mean": round(float(us.mean()), 1),
        "process_us_p99": round(float(np.percentile(us, 99)), 1),
        "process_us_max": round(float(us.max()), 1),
        "underrun_samples": st.underrun_samples, "underrun_blocks": st.underrun_blocks,
        "chunks": st.chunks, "dropped_chunks": st.dropped_chunks,
        "degradations": st.degradations, "final_level": st.level,
    }


def moved_codes(codec: Codec) -> dict[str, Any]:
    """Codes of the example clip (stereo, 48 kHz): the streaming encoder against
    ``Codec.encode``'s encoder.onnx, and encoder.onnx against itself in 16-frame chunks."""
    net = load_stream_encoder(codec.folder, codec.device, codec.threads)
    if net is None:
        return {}
    x = music(6.0, 2)
    ours = encode_offline(net, codec.card, x)

    def plain(chunk: int) -> np.ndarray:
        enc = EncoderStage(codec.encoder, codec.card, 2, chunk)
        return np.concatenate([enc.push(x), enc.finish()], axis=2)

    ref = plain(750)
    frames = ours.shape[0] * ours.shape[2]
    return {"clip_seconds": 6.0, "channel_frames": frames,
            "stream_vs_encode_frames_moved": int((ours != ref).any(1).sum()),
            "stream_vs_encode_codes_moved": int((ours != ref).sum()),
            "encode_16_frame_chunks_frames_moved": int((plain(16) != ref).any(1).sum())}


def encoder_cost(codec: Codec, chunks_frames: list[int], seconds: float = 10.0
                 ) -> list[dict[str, Any]]:
    """CPU time of the encoder stage alone per second of stereo music, pushed a chunk at a
    time, re-running (plain) and streaming: its fixed cost per chunk. Thread CPU time
    (onnxruntime with 1 thread runs in the caller's thread), so a busy machine changes it
    less than it changes wall time."""
    net = load_stream_encoder(codec.folder, codec.device, 1)
    plain_net = type(codec.encoder)(codec.folder / "encoder.onnx", codec.device, 1)
    x = music(seconds, 2)
    hop = codec.card.hop
    rows = []
    for frames in chunks_frames:
        row: dict[str, Any] = {"chunk_frames": frames, "chunk_ms": 1000 * frames * hop / RATE}
        for name in ("plain", "stream"):
            stage: EncoderStage | StreamingEncoderStage
            if name == "plain":
                stage = EncoderStage(plain_net, codec.card, 2, frames)
            elif net is not None:
                stage = StreamingEncoderStage(net, codec.card, 2, frames)
            else:
                continue
            step = frames * hop
            c0 = time.thread_time()
            for i in range(0, x.shape[1], step):
                stage.push(x[:, i : i + step])
            stage.finish()
            row[f"{name}_rtf"] = round((time.thread_time() - c0) / seconds, 4)
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="audio per row (real time)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--blocks", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--channels", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--paths", nargs="+", default=["codec", "postfilter"],
                    choices=["codec", "postfilter"])
    ap.add_argument("--chunks-ms", type=float, nargs="+", default=None,
                    help="chunk lengths to run (default: each path's default chunk)")
    ap.add_argument("--encoders", nargs="+", default=["stream"],
                    choices=["plain", "stream", "model"])
    ap.add_argument("--nfe", type=int, default=None,
                    help="postfilter evaluations (default: the stream's, LIVE_NFE)")
    ap.add_argument("--context", type=int, default=None,
                    help="postfilter window context in frames (default: the stream's)")
    ap.add_argument("--threads", type=int, default=1,
                    help="onnxruntime threads (default 1, as flowdec live uses)")
    ap.add_argument("--codes", action="store_true",
                    help="also count the codes the streaming encoder moves")
    ap.add_argument("--encoder-cost", type=int, nargs="*", default=None, metavar="FRAMES",
                    help="also time the encoder stages alone at these chunk lengths in codec "
                         "frames (none given: 1 3 6 12 24)")
    ap.add_argument("--out", default="bench_out/latency.json")
    a = ap.parse_args()
    codec = Codec(a.model, threads=a.threads)
    head = ("encoder", "chunk_ms", "path", "channels", "block", "latency_ms", "impulse_ms",
            "worker_rtf", "process_us_p99", "process_us_max", "underrun_samples",
            "dropped_chunks", "degradations", "load_avg_1min")
    rows = []
    print(" | ".join(head), flush=True)
    for enc in a.encoders:
        use_encoder(codec, enc)
        for chunk in a.chunks_ms or [None]:
            for path in a.paths:
                post = path == "postfilter"
                settings: dict[str, Any] = {"chunk_ms": chunk, "postfilter": post,
                                            "nfe": a.nfe if post else None}
                if post and a.context is not None:
                    settings["context"] = a.context
                chunk_ms = Stream(codec, worker=False, **settings).chunk * 1000 / RATE
                for channels in a.channels:
                    for block in a.blocks:
                        r = {"encoder": enc, "chunk_ms": chunk_ms, "path": path,
                             "channels": channels, "block": block}
                        lag = impulse_latency(codec, block, channels, **settings)
                        r["impulse_samples"] = lag
                        r["impulse_ms"] = round(1000 * lag / RATE, 1)
                        r.update(run(codec, block, channels, a.seconds, **settings))
                        r["load_avg_1min"] = round(os.getloadavg()[0], 2)
                        rows.append(r)
                        print(" | ".join(str(r[k]) for k in head), flush=True)
    result: dict[str, Any] = {"seconds": a.seconds, "model": str(codec.folder),
                              "threads": a.threads, "cpus": os.cpu_count(),
                              "rows": rows}
    if a.encoder_cost is not None:
        result["encoder_cost"] = encoder_cost(codec, a.encoder_cost or [1, 3, 6, 12, 24])
    if a.codes:
        use_encoder(codec, "model")
        result["codes"] = moved_codes(codec)
        print(result["codes"])
    save(a.out, result)


if __name__ == "__main__":
    main()
