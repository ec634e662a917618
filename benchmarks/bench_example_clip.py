"""Level, peak and mel distance of the bundled example clip through the shipped model, per
bitrate, for the codec path and the postfilter path (NFE 6, seed 0; the peak in dBFS and the
share of samples beyond full scale, which a decoder output can have where the input has
none), and the offline speed (real-time
factor, 1 thread, best of 3, first channel at 6 kbit/s) of encoding with and without the
level gains and of round trips on both paths. Prints tables and writes JSON
(bench_out/example_clip.json). The README's example-clip numbers come from here; LUFS needs
``pyloudnorm`` (in the eval extras).

    python benchmarks/bench_example_clip.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from pedalboard.io import AudioFile

from flowdec.codec import Codec, example_clip
from flowdec.evaluation.metrics import mel_distance
from results import save


def level_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20))


def peak_dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(np.abs(x).max() + 1e-20))


def rtf(work: Callable[[], object], seconds: float, repeat: int = 3) -> float:
    best = min(_timed(work) for _ in range(repeat))
    return round(best / seconds, 4)


def _timed(work: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    work()
    return time.perf_counter() - t0


def main() -> None:
    try:
        import pyloudnorm
    except ImportError:
        pyloudnorm = None
    codec = Codec(threads=1)
    with AudioFile(str(example_clip())) as f:
        audio, sr = f.read(f.frames), int(f.samplerate)
    meter = pyloudnorm.Meter(sr) if pyloudnorm is not None else None
    rows = []
    print(f"input peak {peak_dbfs(audio):+.2f} dBFS")
    print("kbit/s | path | level dB | LUFS dB | mel distance | peak dBFS | samples > 1")
    for b in codec.bitrates:
        for post in (False, True):
            y = codec.roundtrip(audio, sr, bitrate=b, postfilter=post, nfe=6, seed=0)
            lufs = (meter.integrated_loudness(y.T) - meter.integrated_loudness(audio.T)
                    if meter is not None else None)
            mel = float(np.mean([mel_distance(audio[c], y[c], sr) for c in range(audio.shape[0])]))
            over = round(float(np.mean(np.abs(y) > 1.0)), 6)
            r = {"bitrate": b, "path": "postfilter nfe6" if post else "codec",
                 "level_db": round(level_db(y) - level_db(audio), 2),
                 "lufs_db": None if lufs is None else round(float(lufs), 2), "mel": round(mel, 3),
                 "peak_dbfs": round(peak_dbfs(y), 2), "over_full_scale": over}
            rows.append(r)
            print(f"{b:g} | {r['path']} | {r['level_db']:+.2f} | {r['lufs_db']} | {r['mel']:.3f} "
                  f"| {r['peak_dbfs']:+.2f} | {100 * over:.3f} %", flush=True)
    mono, seconds = audio[:1], audio.shape[1] / sr
    speed = {
        "encode (with level gains)": rtf(lambda: codec.encode(mono, sr, 6.0), seconds),
        "encode (frames_per_gain=0)": rtf(lambda: codec.encode(mono, sr, 6.0, frames_per_gain=0),
                                          seconds),
        "round trip, codec path": rtf(lambda: codec.roundtrip(mono, sr, 6.0, postfilter=False),
                                      seconds),
        "round trip, postfilter NFE 6": rtf(
            lambda: codec.roundtrip(mono, sr, 6.0, nfe=6, seed=0, postfilter=True), seconds),
    }
    print("\nmono, 6 kbit/s, 1 thread | RTF")
    for k, v in speed.items():
        print(f"{k} | {v}")
    save("bench_out/example_clip.json", {"model_id": codec.model_id, "rows": rows,
                                         "input_peak_dbfs": round(peak_dbfs(audio), 2),
                                         "rtf": speed})


if __name__ == "__main__":
    main()
