"""Why the postfilter keeps the codec output's band envelope (``flowdec.dsp.envelope``): per
frequency region, the level (dB, energy over all clips) and the error of the compressed
STFT features (mean |Φ(out) − Φ(x)|², Φ as the postfilter's features, each clip at peak 1)
of the codec output y and of the postfilter without the envelope stage (at several NFE: the
ODE solution has converged by NFE 20) and with it, against the clean clips x. Prints a table
and writes JSON (bench_out/envelope.json).

    python benchmarks/bench_envelope.py CLIP_DIR [-b 6] [--nfe 6 20] [--max-seconds 3]

CLIP_DIR holds ``<domain>_<n>.wav`` clips (``python -m flowdec.train.valclips`` makes the
held-out set the model card uses). The level gains are off (``frames_per_gain=0``), so y is
the decoder's own output, as the postfilter sees it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from pedalboard.io import AudioFile

from flowdec.audio import resample
from flowdec.codec import Codec
from flowdec.dsp import features
from flowdec.dsp.envelope import band_energy
from flowdec.pipeline.postfilter import stft_config
from flowdec.postfilter import Postfilter
from results import save

REGIONS_HZ = (0, 1500, 3000, 6000, 12000, 24001)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", type=Path)
    p.add_argument("-b", "--bitrate", type=float, default=6.0)
    p.add_argument("--nfe", type=int, nargs="+", default=[6, 20])
    p.add_argument("--max-seconds", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("bench_out/envelope.json"))
    args = p.parse_args()
    codec = Codec(threads=args.threads)
    pf = Postfilter(threads=args.threads)
    cfg = stft_config(pf.card)
    edges = [int(round(hz * cfg.n_fft / 48000)) for hz in REGIONS_HZ]
    variants = ["codec"] + [f"postfilter NFE {n}, no envelope" for n in args.nfe] + [
        f"postfilter NFE {args.nfe[0]}, envelope"]
    energy = {v: np.zeros(len(REGIONS_HZ) - 1) for v in ["clean", *variants]}
    error = {v: np.zeros(len(REGIONS_HZ) - 1) for v in variants}
    files = sorted(args.clips.glob("*.wav"))
    if not files:
        raise SystemExit(f"{args.clips}: no .wav clips (is it a folder of <domain>_<n>.wav?)")
    for f in files:
        with AudioFile(str(f)) as a:
            x, sr = a.read(a.frames), int(a.samplerate)
        x = resample(x, sr, 48000)[:1, : int(48000 * args.max_seconds)]
        y = codec.decode(codec.encode(x, 48000, args.bitrate, frames_per_gain=0),
                         postfilter=False)
        outs = {"codec": y}
        for n in args.nfe:
            outs[f"postfilter NFE {n}, no envelope"] = pf.enhance(y, n, seed=args.seed,
                                                                  envelope=False)
        outs[f"postfilter NFE {args.nfe[0]}, envelope"] = pf.enhance(y, args.nfe[0],
                                                                     seed=args.seed)
        peak = float(np.abs(y).max()) + 1e-9
        X = features.analysis(x / peak, cfg)
        energy["clean"] += region_energy(X, edges, cfg.alpha)
        for v, out in outs.items():
            Z = features.analysis(out / peak, cfg)
            energy[v] += region_energy(Z, edges, cfg.alpha)
            d = (Z - X) ** 2
            error[v] += [float(d[..., a:b, :].sum(-3).mean()) for a, b in spans(edges)]
        print(f"{f.stem} done", flush=True)
    names = [f"{a / 1000:g}-{round(b / 1000, 1):g} kHz" for a, b in spans(list(REGIONS_HZ))]
    level = {v: (10 * np.log10(energy[v] / energy["clean"])).round(2).tolist() for v in variants}
    err = {v: (error[v] / len(files)).round(4).tolist() for v in variants}
    print(f"\n{len(files)} clips, {args.bitrate:g} kbit/s; level vs clean (dB) | feature error")
    print(f"{'':34s}" + "".join(f"{n:>15s}" for n in names))
    for v in variants:
        cells = zip(level[v], err[v], strict=True)
        print(f"{v:34s}" + "".join(f"{lv:+7.2f} |{e:6.3f}" for lv, e in cells))
    save(args.out, {"clips": len(files), "bitrate": args.bitrate, "regions": names,
                    "level_db_vs_clean": level, "feature_error": err,
                    "command": "python benchmarks/bench_envelope.py CLIP_DIR "
                               f"-b {args.bitrate:g} --nfe {' '.join(map(str, args.nfe))} "
                               f"--max-seconds {args.max_seconds:g}"})


def region_energy(X: np.ndarray, edges: list[int], alpha: float) -> np.ndarray:
    """Σ |S|² of the uncompressed spectrum per frequency region, over channels and frames."""
    out: np.ndarray = band_energy(X, edges, alpha).sum(axis=(0, 2))
    return out


def spans(edges: list[int]) -> list[tuple[int, int]]:
    return list(zip(edges[:-1], edges[1:], strict=True))


if __name__ == "__main__":
    main()
