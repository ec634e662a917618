"""Where the codec loses harmonic lines: bits, magnitude or phase (issue 17).

For each clip (``<domain>_<n>.wav``) the training model of a codec weights file decodes it
with 4, 6 and 10 codebooks, and two oracle hybrids of the 6-codebook output are made in the
codec's own frame layout (Hann, 1280 / 640 samples): the reference's magnitudes with the codec's
phases, and the codec's magnitudes with the reference's phases. Each signal is scored with
Zimtohrli and with its harmonic line contrast: the mean absolute difference between the
log power spectrum (n_fft 4096, 11.7 Hz bins, 80 Hz – 4 kHz) and its 175 Hz moving
average, over the frames within 30 dB of the clip's loudest — high for clear harmonic
lines, low for broadband pulses or noise — reported relative to the reference's (dB).
Prints tables per domain and writes JSON (bench_out/harmonics.json).

    python benchmarks/bench_harmonics.py /data/valclips3 --weights weights/codec.pt \
        [--weights runs/other/checkpoint-folder ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.ndimage import uniform_filter1d
from scipy.signal import istft, stft

from flowdec.audio import resample
from flowdec.evaluation.metrics import zimtohrli
from flowdec.evaluation.paired import format_paired, paired_comparison
from flowdec.train.codec_model import Codec, load_codec
from results import save

RATE = 48000
FRAME, HOP = 1280, 640


def line_contrast(x: np.ndarray) -> float:
    """Harmonic line contrast (dB) of a 48 kHz clip, as described in the module docstring."""
    _, _, z = stft(x, RATE, window="hann", nperseg=4096, noverlap=3072, boundary=None)
    band = slice(int(80 / (RATE / 4096)), int(4000 / (RATE / 4096)))
    power = np.abs(z[band]) ** 2
    level = 10 * np.log10(power + 1e-10)
    frame_db = 10 * np.log10(power.sum(0) + 1e-10)
    loud = frame_db > frame_db.max() - 30
    smooth = uniform_filter1d(level, 15, axis=0)
    inner = slice(7, -7)  # bins whose moving average is complete
    return float(np.abs(level - smooth)[inner][:, loud].mean())


def hybrid(magnitude_of: np.ndarray, phase_of: np.ndarray) -> np.ndarray:
    """One signal's STFT magnitudes with another's phases, in the codec's frame layout."""
    _, _, a = stft(magnitude_of, RATE, window="hann", nperseg=FRAME, noverlap=FRAME - HOP)
    _, _, b = stft(phase_of, RATE, window="hann", nperseg=FRAME, noverlap=FRAME - HOP)
    _, y = istft(np.abs(a) * np.exp(1j * np.angle(b)), RATE, window="hann", nperseg=FRAME,
                 noverlap=FRAME - HOP)
    out: np.ndarray = y[: len(magnitude_of)].astype(np.float32)
    return out


@torch.no_grad()
def decode(model: Codec, x: np.ndarray, n_codebooks: int) -> np.ndarray:
    """The training model's output with ``n_codebooks`` quantizer levels."""
    pad = (-len(x)) % model.cfg.hop
    audio = torch.from_numpy(np.pad(x, (0, pad)))[None]
    z, *_ = model.quantizer(model.encoder(audio), torch.tensor([n_codebooks]))
    y: np.ndarray = model.decoder(z)[0, : len(x)].numpy()
    return y


def signals(model: Codec, x: np.ndarray) -> dict[str, np.ndarray]:
    q6 = decode(model, x, 6)
    return {
        "4 codebooks": decode(model, x, 4),
        "6 codebooks": q6,
        "10 codebooks": decode(model, x, 10),
        "reference magnitude, 6-codebook phase": hybrid(x, q6),
        "6-codebook magnitude, reference phase": hybrid(q6, x),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", type=Path)
    p.add_argument("--weights", action="append", required=True,
                   help="codec weights file or training run folder (repeat to compare)")
    p.add_argument("--out", type=Path, default=Path("bench_out/harmonics.json"))
    args = p.parse_args()
    files = sorted(args.clips.glob("*.wav"))
    if not files:
        raise SystemExit(f"{args.clips}: no .wav clips (a folder of <domain>_<n>.wav)")
    torch.set_num_threads(1)
    clips = []
    for f in files:
        x, sr = sf.read(f, dtype="float32", always_2d=True)
        clips.append((f.stem, f.stem.split("_")[0], resample(x.T, sr, RATE)[0]))
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for weights in args.weights:
        model, _, info = load_codec(weights)
        label = f"{weights} (step {info['steps']})"
        per_clip: dict[str, dict[str, dict[str, float]]] = {}
        for name, _, x in clips:
            scores = {"reference": {"zimtohrli": 0.0, "contrast_db": line_contrast(x)}}
            for key, y in signals(model, x).items():
                scores[key] = {"zimtohrli": zimtohrli(x, y),
                               "contrast_db": line_contrast(y) - scores["reference"]["contrast_db"]}
            per_clip[name] = scores
            print(label, name, " ".join(f"{v['zimtohrli']:.4f}/{v['contrast_db']:+.2f}"
                                        for k, v in scores.items() if k != "reference"),
                  flush=True)
        results[label] = per_clip
        report(label, clips, per_clip)
    save(args.out, {"clips": str(args.clips), "models": results})


def report(label: str, clips: list[tuple[str, str, np.ndarray]],
           per_clip: dict[str, dict[str, dict[str, float]]]) -> None:
    """Two tables per model: Zimtohrli (mean, and paired against the 6-codebook output) and
    line contrast against the reference (paired: mean [bootstrap 95 %] clips above it)."""
    keys = [k for k in next(iter(per_clip.values())) if k != "reference"]
    domains = sorted({d for _, d, _ in clips}) + ["all"]

    def column(d: str, k: str, metric: str) -> list[float]:
        return [per_clip[n][k][metric] for n, dom, _ in clips if d == "all" or dom == d]

    for metric, title, base in (
            ("zimtohrli", "Zimtohrli ↓: mean; paired against 6 codebooks", "6 codebooks"),
            ("contrast_db", "line contrast against the reference (dB)", "reference")):
        print(f"\n{label}: {title}")
        print(f"| signal | {' | '.join(domains)} |")
        print(f"|---|{'---|' * len(domains)}")
        for k in keys:
            cells = []
            for d in domains:
                b = column(d, k, metric)
                if metric == "zimtohrli":
                    r = paired_comparison(column(d, base, metric), b, higher_is_better=False)
                    cells.append(f"{np.mean(b):.4f}" + ("" if k == base else
                                                        f" ({format_paired(vars(r))})"))
                else:
                    r = paired_comparison([0.0] * len(b), b, higher_is_better=True)
                    cells.append(format_paired(vars(r)))
            print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
