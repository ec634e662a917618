"""Behaviour and a quality floor of the *shipped* model on the bundled example clip.

These run only with the model that ships in the package (``flowdec/models/flowdec-75``):
round trip at every bitrate keeps length, rate and channels, stays finite, and the codec
path meets a measured quality floor that rises with bitrate. The floors and level bounds are
the shipped weights' measured values plus a margin (regression guards, not goals): the codec
path loses 2.6–3.7 dB of level on this clip; the postfilter restores it to within 0.4 dB at
4.5–7.5 kbit/s (1.5 dB short at 3 kbit/s) but adds noise (mel distance 0.40–0.42 vs
0.29–0.32). See the README's limits and the model card.
"""

from __future__ import annotations

import numpy as np
import pytest
from pedalboard.io import AudioFile

from flowdec.codec import Codec, example_clip
from flowdec.evaluation.metrics import mel_distance
from flowdec.model_files import SHIPPED_MODEL, models_root

SHIPPED = models_root() / SHIPPED_MODEL
pytestmark = pytest.mark.skipif(not (SHIPPED / "model_card.json").is_file(),
                                reason="the shipped model is not installed")

# mel distance (mean L1 of log10 mel magnitudes) of the codec path on the example clip:
# measured for the shipped weights, plus margin
MEL_FLOOR = {3.0: 0.34, 4.5: 0.325, 6.0: 0.315, 7.5: 0.31}  # measured 0.320/0.305/0.295/0.289


@pytest.fixture(scope="module")
def shipped() -> Codec:
    return Codec(threads=2)


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, int]:
    with AudioFile(str(example_clip())) as f:
        return f.read(f.frames), f.samplerate


def level_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20))


@pytest.fixture(scope="module")
def codec_path(shipped: Codec, clip: tuple[np.ndarray, int]) -> dict[float, np.ndarray]:
    audio, sr = clip
    return {b: shipped.roundtrip(audio, sr, bitrate=b, postfilter=False) for b in shipped.bitrates}


def test_every_bitrate_keeps_shape_level_and_is_finite(
        codec_path: dict[float, np.ndarray], clip: tuple[np.ndarray, int]) -> None:
    audio, _ = clip
    for b, out in codec_path.items():
        assert out.shape == audio.shape, b
        assert np.isfinite(out).all(), b
        assert abs(level_db(out) - level_db(audio)) <= 4.5, (b, level_db(out), level_db(audio))


def test_codec_path_quality_floor_and_rises_with_bitrate(
        codec_path: dict[float, np.ndarray], clip: tuple[np.ndarray, int]) -> None:
    audio, sr = clip
    mel = {b: float(np.mean([mel_distance(audio[c], out[c], sr) for c in range(audio.shape[0])]))
           for b, out in codec_path.items()}
    for b, floor in MEL_FLOOR.items():
        assert mel[b] <= floor, (b, mel)
    rates = sorted(mel)
    assert mel[rates[-1]] < mel[rates[0]], mel  # more bits, closer to the reference


# the postfilter path (NFE 6, seed 0) on the example clip: level change in dB (RMS over both
# channels) and mel distance; measured -1.52/-0.39/+0.31/+0.27 dB and 0.415/0.408/0.404/0.404
POSTFILTER_LEVEL_DB = {3.0: 2.0, 4.5: 1.0, 6.0: 1.0, 7.5: 1.0}
POSTFILTER_MEL_FLOOR = 0.45


def test_postfilter_restores_level(shipped: Codec, clip: tuple[np.ndarray, int]) -> None:
    audio, sr = clip
    for b, bound in POSTFILTER_LEVEL_DB.items():
        out = shipped.roundtrip(audio, sr, bitrate=b, nfe=6, seed=0, postfilter=True)
        assert out.shape == audio.shape and np.isfinite(out).all(), b
        change = level_db(out) - level_db(audio)
        assert abs(change) <= bound, (b, change)
        mel = float(np.mean([mel_distance(audio[c], out[c], sr) for c in range(audio.shape[0])]))
        assert mel <= POSTFILTER_MEL_FLOOR, (b, mel)


def test_postfilter_roundtrip_is_finite_and_reproducible(
        shipped: Codec, clip: tuple[np.ndarray, int]) -> None:
    audio, sr = clip
    a = shipped.roundtrip(audio[:, : sr * 2], sr, bitrate=6.0, nfe=6, seed=3, postfilter=True)
    b = shipped.roundtrip(audio[:, : sr * 2], sr, bitrate=6.0, nfe=6, seed=3, postfilter=True)
    assert a.shape == audio[:, : sr * 2].shape and np.isfinite(a).all()
    assert np.array_equal(a, b)
    assert abs(level_db(a) - level_db(audio[:, : sr * 2])) <= 2.0
