"""What the level gains do, per domain: loudness change (ITU-R BS.1770, pyloudnorm), ViSQOL
and mel distance of the plain codec path with gains off, with the file gains (1 s blocks)
and with the stream gains (40 ms blocks). Prints a table and writes JSON
(bench_out/level.json). Needs the eval extras (ViSQOL) and ``pyloudnorm``.

    python benchmarks/bench_level.py CLIP_DIR [-b 3 6] [--max-seconds 3]

CLIP_DIR holds ``<domain>_<n>.wav`` clips (``python -m flowdec.train.valclips`` makes the
held-out set the model card uses).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyloudnorm
from pedalboard.io import AudioFile

from flowdec.audio import resample
from flowdec.codec import Codec
from flowdec.evaluation.metrics import mel_distance, visqol
from flowdec.format.bitstream import FILE_FRAMES_PER_GAIN, LIVE_FRAMES_PER_GAIN
from results import save

VARIANTS = {"no gains": 0, "file gains (1 s)": FILE_FRAMES_PER_GAIN,
            "stream gains (40 ms)": LIVE_FRAMES_PER_GAIN}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", type=Path)
    p.add_argument("-b", "--bitrates", type=float, nargs="+", default=[3.0, 6.0])
    p.add_argument("--max-seconds", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("bench_out/level.json"))
    args = p.parse_args()
    codec = Codec(threads=args.threads)
    meter = pyloudnorm.Meter(48000)
    rows = []
    for f in sorted(args.clips.glob("*.wav")):
        with AudioFile(str(f)) as a:
            x, sr = a.read(a.frames), int(a.samplerate)
        x = resample(x, sr, 48000)[:1, : int(48000 * args.max_seconds)]
        ref = meter.integrated_loudness(x[0])
        for b in args.bitrates:
            for name, g in VARIANTS.items():
                y = codec.decode(codec.encode(x, 48000, b, frames_per_gain=g), postfilter=False)
                rows.append({"clip": f.stem, "domain": f.stem.split("_")[0], "bitrate": b,
                             "variant": name,
                             "loudness_change_lu": meter.integrated_loudness(y[0]) - ref,
                             "visqol": visqol(x[0], y[0]), "mel": mel_distance(x[0], y[0])})
            print(f"{f.stem} {b:g} kbit/s done", flush=True)
    table: dict[tuple[str, float, str], list[dict[str, float]]] = defaultdict(list)
    for r in rows:
        table[(r["domain"], r["bitrate"], r["variant"])].append(r)
    print("domain | kbit/s | variant | mean |loudness change| LU (max) | ViSQOL | mel")
    summary = []
    for (dom, b, name), rs in sorted(table.items()):
        lu = np.abs([r["loudness_change_lu"] for r in rs])
        s = {"domain": dom, "bitrate": b, "variant": name, "clips": len(rs),
             "abs_loudness_change_lu_mean": float(lu.mean()),
             "abs_loudness_change_lu_max": float(lu.max()),
             "visqol": float(np.mean([r["visqol"] for r in rs])),
             "mel": float(np.mean([r["mel"] for r in rs]))}
        summary.append(s)
        print(f"{dom} | {b:g} | {name} | {s['abs_loudness_change_lu_mean']:.2f} "
              f"({s['abs_loudness_change_lu_max']:.2f}) | {s['visqol']:.2f} | {s['mel']:.3f}")
    save(args.out, {"model_id": codec.model_id, "summary": summary, "clips": rows})


if __name__ == "__main__":
    main()
