"""Peak memory of the chunked file path for a long file (default 10 minutes, 48 kHz mono).

    python benchmarks/bench_memory.py [--model DIR] [--minutes 10] [--nfe 0 2] [--out FILE]

Each measurement runs in a fresh subprocess: RSS right after the model is loaded, then the
peak RSS sampled every 20 ms (psutil) while the file is processed; "added" is the difference,
i.e. what the audio path costs (``ru_maxrss`` is also recorded, but it includes the transient
peak of creating the onnxruntime sessions). The path is
``flowdec.files.roundtrip_file`` (pedalboard reader → encoder stage → decoder stage →
postfilter stage → writer, 10 s chunks); ``--nfe 0`` means postfilter off. Writes JSON
(default ``bench_out/memory.json``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from results import save

CHILD = r"""
import resource, sys, threading, time
import psutil
from flowdec.codec import Codec
model, src, dst, nfe, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
codec = Codec(model, threads=1)
proc = psutil.Process()
loaded = proc.memory_info().rss
peak = [loaded]
done = threading.Event()
def sample():
    while not done.wait(0.02):
        peak[0] = max(peak[0], proc.memory_info().rss)
threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
if mode == "run":
    from flowdec.files import roundtrip_file
    roundtrip_file(codec, src, dst, bitrate=6.0, nfe=max(nfe, 2), seed=0,
                   postfilter=nfe > 0, progress=False)
wall = time.perf_counter() - t0
done.set()
peak[0] = max(peak[0], proc.memory_info().rss)
print(loaded / 2**20, peak[0] / 2**20, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      wall)
"""


def measure(model: str, src: Path, dst: Path, nfe: int) -> tuple[float, float, float, float]:
    """(RSS after model load, peak RSS sampled every 20 ms after load, ru_maxrss, wall s)."""
    r = subprocess.run([sys.executable, "-c", CHILD, model, str(src), str(dst), str(nfe), "run"],
                       capture_output=True, text=True, check=True)
    loaded, peak, maxrss, wall = (float(v) for v in r.stdout.split()[-4:])
    return loaded, peak, maxrss, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--nfe", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--out", default="bench_out/memory.json")
    args = ap.parse_args()
    import numpy as np
    from scipy.io import wavfile

    model = args.model or "/work/testmodel"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "long.wav"
        n = int(args.minutes * 60 * 48000)
        rng = np.random.default_rng(0)
        x = (0.1 * rng.standard_normal(n)).astype(np.float32)
        wavfile.write(src, 48000, (x * 32767).astype(np.int16))
        del x
        for nfe in args.nfe:
            base, peak, maxrss, wall = measure(model, src, Path(tmp) / "o.wav", nfe)
            row = {"path": "files.roundtrip_file", "minutes": args.minutes,
                   "postfilter": nfe > 0, "nfe": nfe, "peak_rss_mb": peak,
                   "loaded_rss_mb": base, "ru_maxrss_mb": maxrss, "added_mb": peak - base,
                   "rtf": wall / (n / 48000)}
            rows.append(row)
            print(f"nfe {nfe}: peak {peak:.0f} MB (+{peak - base:.0f} MB), RTF {row['rtf']:.3f}",
                  flush=True)
    save(args.out, {"model": model, "rows": rows}, indent=2)
    print("\n| path | audio | postfilter | peak RSS MB | added MB | RTF |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        pf = f"NFE {r['nfe']}" if r["postfilter"] else "off"
        print(f"| {r['path']} | {r['minutes']:g} min mono 48 kHz | {pf} | {r['peak_rss_mb']:.0f} "
              f"| {r['added_mb']:.0f} | {r['rtf']:.3f} |")


if __name__ == "__main__":
    main()
