"""Spectrograms of a clip and of its decodes by one or more models, one panel each.

For looking before trusting a number: harmonic lines, transients, noise floors. Each model
codes the clip at ``--bitrate`` on the codec path (and with the postfilter, ``--postfilter``).

    python benchmarks/plot_spectrograms.py CLIP.wav --model OLD_DIR --model NEW_DIR \
        [--bitrate 6] [--seconds 5] [--postfilter] [-o bench_out/spectrograms.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from pedalboard.io import AudioFile

from flowdec import Codec
from flowdec.audio import resample


def log_spec(x: np.ndarray, rate: int, n_fft: int = 2048, hop: int = 256) -> np.ndarray:
    """Log-magnitude STFT (dB), Hann window, [bins, frames]."""
    w = np.hanning(n_fft).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, n_fft // 2), n_fft)[::hop]
    return 20 * np.log10(np.abs(np.fft.rfft(frames * w, axis=1)).T + 1e-6)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clip")
    p.add_argument("--model", action="append", default=[], help="model folder (repeat)")
    p.add_argument("--bitrate", type=float, default=6.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--postfilter", action="store_true", help="also decode with the postfilter")
    p.add_argument("-o", "--out", default="bench_out/spectrograms.png")
    args = p.parse_args()
    with AudioFile(args.clip) as f:
        audio, rate = f.read(f.frames), int(f.samplerate)
    x = resample(audio.mean(0, keepdims=True), rate, 48000)[:, : int(args.seconds * 48000)]
    panels = [("reference", x[0])]
    for folder in args.model or [None]:
        codec = Codec(folder, threads=2)
        stream = codec.encode(x, 48000, bitrate=args.bitrate)
        name = f"{Path(folder).name if folder else 'shipped'} ({codec.model_id[:8]})"
        panels.append((f"{name}, codec {args.bitrate:g} kbit/s",
                       codec.decode(stream, postfilter=False)[0]))
        if args.postfilter and codec.has_postfilter:
            panels.append((f"{name}, + postfilter NFE 6",
                           codec.decode(stream, postfilter=True, nfe=6, seed=0)[0]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 2.6 * len(panels)), sharex=True)
    for ax, (title, y) in zip(np.atleast_1d(axes), panels, strict=True):
        s = log_spec(y.astype(np.float32), 48000)
        top = float(s.max())
        ax.imshow(s, origin="lower", aspect="auto", vmin=top - 90, vmax=top, cmap="magma",
                  extent=(0, len(y) / 48000, 0, 24))
        ax.set_ylabel("kHz")
        ax.set_title(title, fontsize=9)
    np.atleast_1d(axes)[-1].set_xlabel("s")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
