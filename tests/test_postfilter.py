"""The band envelope stage (``flowdec.dsp.envelope``) and the standalone ``flowdec.Postfilter``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pedalboard.io import AudioFile

from flowdec.codec import Codec, example_clip
from flowdec.dsp import features
from flowdec.dsp.envelope import Envelope, EnvelopeMatch, band_edges, erb_rate, match_envelope
from flowdec.model.files import ModelError
from flowdec.pipeline.postfilter import PostfilterSolve
from flowdec.postfilter import Postfilter

RATE, N_FFT, ALPHA = 48000, 1536, 0.3


def features_of(x: np.ndarray) -> np.ndarray:
    return features.analysis(x, features.STFTConfig(n_fft=N_FFT, hop=384, alpha=ALPHA, beta=0.3))


def band_energy_reference(X: np.ndarray, edges: np.ndarray, alpha: float) -> np.ndarray:
    """Per frame and band, Σ |S|² of the uncompressed spectrum (|S| ∝ |X|^(1/α)); loops."""
    c = X[..., 0, :, :].astype(np.float64) + 1j * X[..., 1, :, :].astype(np.float64)
    lin = np.abs(c) ** (1.0 / alpha)
    out = np.zeros(X.shape[:-3] + (len(edges) - 1, X.shape[-1]))
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        out[..., i, :] = (lin[..., a:b, :] ** 2).sum(-2)
    return out


def test_band_edges_follow_erb_rate() -> None:
    e = band_edges(N_FFT, RATE, 64)
    assert e[0] == 0 and e[-1] == N_FFT // 2 + 1
    assert np.all(np.diff(e) >= 2)
    assert 40 <= len(e) - 1 <= 64  # the lowest bands are widened to 2 bins, so fewer
    widths = np.diff(erb_rate(e * RATE / N_FFT))
    # above the widened low bands every band spans the same ERB-rate step (to a bin)
    top = widths[len(widths) // 2 : -1]
    assert np.ptp(top) < 0.2 * np.mean(top)


def test_match_envelope_sets_band_energies() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(RATE).astype(np.float32) * 0.1
    y = np.convolve(x, [0.5, 0.3, -0.2], "same").astype(np.float32)  # other spectral tilt
    X, Y = features_of(x), features_of(y)
    e = band_edges(N_FFT, RATE, 32)
    out = match_envelope(X, Y, e, ALPHA, max_gain_db=60.0)
    got, want = band_energy_reference(out, e, ALPHA), band_energy_reference(Y, e, ALPHA)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-12)
    # only magnitudes change: the phase of every bin is X's
    a = np.angle(out[:, 0] + 1j * out[:, 1])
    b = np.angle(X[:, 0] + 1j * X[:, 1])
    mask = np.hypot(X[:, 0], X[:, 1]) > 1e-3
    np.testing.assert_allclose(np.cos(a - b)[mask], 1.0, atol=1e-4)


def test_match_envelope_clamps_keeps_low_bins_and_is_identity_on_itself() -> None:
    rng = np.random.default_rng(1)
    Y = features_of(rng.standard_normal((2, RATE // 2)).astype(np.float32) * 0.1)
    X = Y * np.float32(10 ** (-40 * ALPHA / 20))  # every band 40 dB quieter
    e = band_edges(N_FFT, RATE, 64)
    out = match_envelope(X, Y, e, ALPHA, max_gain_db=24.0, keep_bins=24)
    ratio = band_energy_reference(out, e, ALPHA) / band_energy_reference(X, e, ALPHA)
    lifted = 10 * np.log10(ratio[..., 12:, :])  # bands above the kept bins
    np.testing.assert_allclose(lifted, 24.0, atol=1e-3)
    assert np.array_equal(out[..., :24, :], Y[..., :24, :])
    assert np.array_equal(match_envelope(Y, Y, e, ALPHA, 24.0), Y)


def test_match_envelope_silence_and_bad_shapes() -> None:
    e = band_edges(N_FFT, RATE, 16)
    Z = np.zeros((1, 2, N_FFT // 2 + 1, 5), np.float32)
    Y = Z.copy()
    Y[0, 0, 100:200] = 0.5
    out = match_envelope(Z, Y, e, ALPHA, 24.0)  # nothing to scale: stays silent, no NaN
    assert np.isfinite(out).all() and not out.any()
    out = match_envelope(Y, Z, e, ALPHA, 24.0)  # y silent: clamped at -24 dB, finite
    assert np.isfinite(out).all()
    with pytest.raises(ValueError, match="must be equal"):
        match_envelope(Z[..., :3], Z, e, ALPHA, 24.0)
    with pytest.raises(ValueError, match="band edges"):
        match_envelope(Z, Z, e[:-1], ALPHA, 24.0)
    with pytest.raises(ValueError, match="invalid envelope"):
        Envelope(0, 24.0, 750.0)


def test_envelope_match_from_settings() -> None:
    m = EnvelopeMatch(Envelope(64, 24.0, 750.0), N_FFT, RATE, ALPHA)
    assert m.keep_bins == 24  # 750 Hz / 31.25 Hz per bin
    assert m.edges[-1] == N_FFT // 2 + 1


# -- the standalone postfilter on the tiny model (its quality: on the shipped model) -----------

@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path) -> Path:
    """These tests need a model, not the shipped model's quality: the tiny random one."""
    return tiny_model_dir


@pytest.fixture(scope="module")
def codec(tiny_codec: Codec) -> Codec:
    return tiny_codec


@pytest.fixture(scope="module")
def pf(model_dir: Path) -> Postfilter:
    try:
        return Postfilter(model_dir, threads=2)
    except ModelError:
        pytest.skip("model has no postfilter")


def _decode_example(codec: Codec) -> np.ndarray:
    """2 s of the example clip through the codec alone (mono, 48 kHz)."""
    with AudioFile(str(example_clip())) as f:
        audio = f.read(int(2 * f.samplerate)).mean(0)
        sr = f.samplerate
    return codec.roundtrip(audio, sr, bitrate=6.0, postfilter=False)


@pytest.fixture(scope="module")
def decoded(codec: Codec) -> np.ndarray:
    return _decode_example(codec)


def test_enhance_is_seeded_and_keeps_shape(pf: Postfilter, decoded: np.ndarray) -> None:
    a = pf.enhance(decoded, nfe=6, seed=7)
    b = pf.enhance(decoded, nfe=6, seed=7)
    c = pf.enhance(decoded, nfe=6, seed=8)
    assert a.shape == decoded.shape and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, b)
    assert not np.allclose(a, c, atol=1e-4)
    e = pf.enhance(decoded, nfe=6, seed=7, solver="euler")
    assert e.shape == a.shape and not np.allclose(a, e, atol=1e-4)
    st = pf.enhance(np.stack([decoded, decoded * 0.5]), nfe=2, seed=1)
    assert st.shape == (2, decoded.size)
    resampled = pf.enhance(decoded[:44100], nfe=2, seed=1, sample_rate=44100)
    assert resampled.shape == (44100,) and np.isfinite(resampled).all()


def _check_envelope_is_kept(pf: Postfilter, decoded: np.ndarray) -> None:
    """Every band of ``pf.enhance(decoded)`` within 0.5 dB of ``decoded``'s level, and the
    upper half of the bands more than twice as far off without the envelope stage."""
    assert pf.card.envelope is not None, "this model's card has no envelope stage"
    cfg = features.STFTConfig(n_fft=pf.card.n_fft, hop=pf.card.hop, alpha=pf.card.alpha,
                              beta=pf.card.beta)
    e = band_edges(cfg.n_fft, RATE, 16)

    def band_db(x: np.ndarray) -> np.ndarray:
        energy = band_energy_reference(features.analysis(x, cfg), e, cfg.alpha)[0].sum(-1)
        return 10 * np.log10(energy + 1e-30)

    ref = band_db(decoded)
    kept = band_db(pf.enhance(decoded, nfe=6, seed=0)) - ref
    raw = band_db(pf.enhance(decoded, nfe=6, seed=0, envelope=False)) - ref
    assert np.abs(kept).max() <= 0.5, kept
    top = slice(len(ref) // 2, None)  # the upper half of the bands (above ~3 kHz)
    assert np.abs(raw[top]).mean() > 2 * np.abs(kept[top]).mean(), (raw, kept)


def test_enhance_keeps_the_codec_output_envelope(pf: Postfilter, decoded: np.ndarray) -> None:
    """The envelope stage keeps each band's level whatever the network makes of it: the tiny
    random network's own output is about 23 dB too loud in every band; the stage keeps them
    within 0.11 dB."""
    _check_envelope_is_kept(pf, decoded)


@pytest.mark.quality  # what the trained network loses without the stage
def test_shipped_enhance_keeps_the_codec_output_envelope(shipped_codec: Codec) -> None:
    """What the envelope stage is for: without it the shipped network's output is several dB
    off the decoded audio it starts from in the upper bands (the top one about 10 dB quiet);
    with it every band keeps that audio's level (the stage matches twice, the second time on
    the STFT of the synthesised signal, since overlap-add of the solver's frames loses about
    1 dB)."""
    pf = Postfilter(shipped_codec.folder, threads=2)
    _check_envelope_is_kept(pf, _decode_example(shipped_codec))


def test_no_evaluations_skip_the_envelope(pf: Postfilter, decoded: np.ndarray) -> None:
    """The streaming engine's cheapest level (NFE 0) hands y's frames back; the stage then
    does no envelope matching (the machine is overloaded) and returns y."""
    out = {}
    for envelope in (True, False):
        chain = pf.chain(1, nfe=6, seed=0, envelope=envelope)
        assert chain.post is not None and isinstance(chain.post.solve, PostfilterSolve)
        chain.post.solve.nfe = 0
        out[envelope] = np.concatenate([chain.push(decoded[None]), chain.finish()], axis=1)
    assert np.array_equal(out[True], out[False])
    n = min(out[True].shape[1], decoded.size)
    assert n > decoded.size - 1000
    np.testing.assert_allclose(out[True][0, :n], decoded[:n], atol=1e-4)


def test_many_channels_are_evaluated_in_groups(pf: Postfilter) -> None:
    """A window of many channels goes through the network in groups of channels (bounded
    activations, whatever the channel count) and gives what one evaluation of all gives."""
    from flowdec.pipeline.postfilter import SOLVE_CHANNEL_FRAMES

    batches: list[tuple[int, int]] = []

    def net(x: np.ndarray, y: np.ndarray, t: float) -> np.ndarray:
        batches.append((x.shape[0], x.shape[-1]))
        return y - x * np.float32(1 + t)  # per channel, like the network

    frames = 40
    Y = np.random.default_rng(0).standard_normal(
        (64, 2, pf.card.n_fft // 2 + 1, frames)).astype(np.float32)
    split = PostfilterSolve(net, pf.card, "cpu", nfe=2, seed=5)  # type: ignore[arg-type]
    out = split(Y, 0)
    assert len(batches) > 2 and all(b * n <= SOLVE_CHANNEL_FRAMES for b, n in batches)
    whole = PostfilterSolve(net, pf.card, "cpu", nfe=2, seed=5)  # type: ignore[arg-type]
    whole._velocity = net  # type: ignore[method-assign]
    np.testing.assert_array_equal(out, whole(Y, 0))


def test_enhance_bad_input(pf: Postfilter, decoded: np.ndarray) -> None:
    bad = decoded.copy()
    bad[10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pf.enhance(bad)
    with pytest.raises(ValueError, match="solver"):
        pf.enhance(decoded, solver="rk4")
    with pytest.raises(ValueError, match="sigma"):
        pf.enhance(decoded, sigma="flat")


def test_model_without_postfilter(tmp_path: Path, model_dir: Path) -> None:
    """A model exported without a postfilter: its card has no postfilter section and does
    not list postfilter.onnx (every other file the card lists is there)."""
    card = json.loads((model_dir / "model_card.json").read_text())
    card.pop("postfilter", None)
    card["files"].pop("postfilter.onnx", None)
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    for name in card["files"]:
        (tmp_path / name).symlink_to(model_dir / name)
    with pytest.raises(ModelError, match="no postfilter"):
        Postfilter(tmp_path)
