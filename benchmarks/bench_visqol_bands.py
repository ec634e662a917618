"""Two settings of a ``flowdec eval`` output folder compared where ViSQOL looks: per clip, the
ViSQOL of each, and how far apart their spectrograms are at ViSQOL's own resolution (its
32-band gammatone filterbank, 80 ms windows, 20 ms hop, in dB) next to each one's distance
from the reference. Prints a table and writes JSON (bench_out/visqol_bands.json). Needs the
eval extras (visqol-python).

    flowdec eval CLIPS -b 6 --nfe 6 --baselines --max-seconds 3 --seed 0 -o EVAL_DIR
    python benchmarks/bench_visqol_bands.py EVAL_DIR [--a ndac] [--b flowdec-nfe6]

It is how the postfilter's ViSQOL gap was traced (README, Limits): after the envelope stage
the postfilter output is within a few tenths of a dB of the codec output at this resolution,
and both are equally far from the reference, so ViSQOL differences between them are of the
size that such small spectrogram changes make — not a different envelope.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from pedalboard.io import AudioFile
from visqol.analysis_window import AnalysisWindow
from visqol.audio_utils import AudioSignal
from visqol.gammatone import GammatoneSpectrogramBuilder

from flowdec.evaluation.metrics import visqol
from results import save

RATE = 48000
RANGES_HZ = ((50, 1500), (1500, 6000), (6000, 24000))


def spectrogram_db(x: np.ndarray, builder: GammatoneSpectrogramBuilder,
                   window: AnalysisWindow) -> tuple[np.ndarray, np.ndarray]:
    """ViSQOL's gammatone spectrogram in dB [bands, frames] and the band centres in Hz."""
    spec = builder.build(AudioSignal(x.astype(np.float64), RATE), window)
    return 10 * np.log10(np.asarray(spec.data) + 1e-12), np.asarray(spec.center_freq_bands)


def read_mono(path: Path) -> np.ndarray:
    with AudioFile(str(path)) as f:
        if f.samplerate != RATE:
            raise SystemExit(f"{path}: {f.samplerate} Hz; flowdec eval writes 48 kHz clips")
        audio: np.ndarray = f.read(f.frames).mean(axis=0)
    return audio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("eval_dir", type=Path, help="output folder of flowdec eval (has audio/)")
    p.add_argument("--a", default="ndac", help="first setting (default ndac)")
    p.add_argument("--b", default="flowdec-nfe6", help="second setting (default flowdec-nfe6)")
    p.add_argument("--out", type=Path, default=Path("bench_out/visqol_bands.json"))
    args = p.parse_args()
    clips = sorted(d for d in (args.eval_dir / "audio").iterdir() if d.is_dir())
    if not clips:
        raise SystemExit(f"{args.eval_dir / 'audio'} holds no clip folders: run flowdec eval")
    builder, window = GammatoneSpectrogramBuilder(32, 50), AnalysisWindow(RATE, 0.25, 0.08)
    rows = []
    for clip in clips:
        files = {k: clip / f"{k}.wav" for k in ("reference", args.a, args.b)}
        missing = [str(f) for f in files.values() if not f.exists()]
        if missing:
            raise SystemExit(f"missing {', '.join(missing)}: is --a/--b a setting of this eval?")
        x, a, b = (read_mono(f) for f in files.values())
        X, centres = spectrogram_db(x, builder, window)
        A, _ = spectrogram_db(a, builder, window)
        B, _ = spectrogram_db(b, builder, window)
        row: dict[str, object] = {"clip": clip.name, "visqol_a": visqol(x, a),
                                  "visqol_b": visqol(x, b)}
        for lo, hi in RANGES_HZ:
            m = (centres >= lo) & (centres < hi)
            key = f"{lo}-{hi}"
            row[f"a_b_db_{key}"] = float(np.mean(np.abs(A[m] - B[m])))
            row[f"ref_a_db_{key}"] = float(np.mean(np.abs(X[m] - A[m])))
            row[f"ref_b_db_{key}"] = float(np.mean(np.abs(X[m] - B[m])))
        rows.append(row)
    ranges = [f"{lo}-{hi}" for lo, hi in RANGES_HZ]
    print(f"a = {args.a}, b = {args.b}; mean |dB| difference per range (Hz) of ViSQOL's "
          "gammatone spectrogram")
    head = ["clip", "ViSQOL a", "ViSQOL b", "b − a"]
    head += [f"|a−b| {r}" for r in ranges] + [f"|ref−a| / |ref−b| {r}" for r in ranges]
    print("| " + " | ".join(head) + " |")
    print("|---" * len(head) + "|")
    for r in rows:
        va, vb = float(r["visqol_a"]), float(r["visqol_b"])  # type: ignore[arg-type]
        cells = [str(r["clip"]), f"{va:.3f}", f"{vb:.3f}", f"{vb - va:+.3f}"]
        cells += [f"{r[f'a_b_db_{k}']:.2f}" for k in ranges]
        cells += [f"{r[f'ref_a_db_{k}']:.2f} / {r[f'ref_b_db_{k}']:.2f}" for k in ranges]
        print("| " + " | ".join(cells) + " |")
    save(args.out, {"eval_dir": str(args.eval_dir), "a": args.a, "b": args.b,
                    "visqol_resolution": "32 gammatone bands from 50 Hz, 80 ms window, 20 ms hop",
                    "clips": rows})


if __name__ == "__main__":
    main()
