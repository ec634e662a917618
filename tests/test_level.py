"""Level gains (flowdec.dsp.level): measurement against a time-domain reference, exactness for any
push pattern, the applied gain curve, and the round trip through the codec."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from flowdec.codec import Codec
from flowdec.dsp.level import GainStage, LevelMeter, OutputLevel, PeakNormalizer, k_weights
from flowdec.format.bitstream import GAIN_LIMIT_DB

HOP = 640


def k_weighted_energy(x: np.ndarray) -> float:
    """Reference: the BS.1770 biquads run in the time domain, energy summed."""
    y = lfilter([1.53512485958697, -2.69169618940638, 1.19839281085285],
                [1.0, -1.69065929318241, 0.73248077421585], x.astype(np.float64))
    y = lfilter([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621], y)
    return float(np.sum(y**2))


def pushes(rng: np.random.Generator, n: int) -> list[slice]:
    cuts = np.sort(rng.integers(0, n, size=int(rng.integers(0, 12))))
    edges = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def test_k_weights_match_the_time_domain_filter() -> None:
    """Frame-spectrum weighting vs the biquads in the time domain: white noise and tones from
    200 Hz up agree within 0.05 dB. Below ~100 Hz the 640-sample frames leak (a 50 Hz tone
    reads 1.6 dB high) — equally for input and decoded output, so their ratio is unaffected."""
    rng = np.random.default_rng(0)
    n = 75 * HOP
    t = np.arange(n) / 48000

    def ours(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x.reshape(-1, HOP), axis=1)) ** 2
        return float((spec @ k_weights(HOP)).sum())

    for x in (rng.standard_normal(n), np.sin(2 * np.pi * 200 * t),
              np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 8000 * t)):
        assert 10 * np.log10(ours(x) / k_weighted_energy(x)) == pytest.approx(0, abs=0.05)
    low = np.sin(2 * np.pi * 50 * t)
    assert 10 * np.log10(ours(low) / ours(low * 0.5)) == pytest.approx(20 * np.log10(2), abs=1e-9)
    # the standard's landmarks: about 0 dB at 1 kHz, +4 dB at high frequencies
    w = k_weights(HOP) * HOP / 2
    f = np.fft.rfftfreq(HOP, 1 / 48000)
    assert 10 * np.log10(w[f == 975][0]) == pytest.approx(0.6, abs=0.2)
    assert 10 * np.log10(w[f == 15000][0]) == pytest.approx(4.0, abs=0.1)


def test_meter_measures_a_known_attenuation_per_block() -> None:
    rng = np.random.default_rng(1)
    g, blocks = 3, 6
    x = rng.standard_normal((2, blocks * g * HOP)).astype(np.float32) * 0.1
    atten_db = np.array([[0, 3, 6, 12.5, -4, 40], [1, 1, 1, 1, 1, 1]], np.float64)
    y = x * np.repeat(10 ** (-atten_db / 20), g * HOP, axis=1).astype(np.float32)
    m = LevelMeter(2, HOP, g)
    m.add_input(x)
    m.add_output(y)
    gains = m.gains()
    want = np.clip(np.round(atten_db * 4) / 4, -GAIN_LIMIT_DB, GAIN_LIMIT_DB)
    np.testing.assert_allclose(gains, want, atol=0.25)
    assert gains.dtype == np.float32 and np.all(gains * 4 == np.round(gains * 4))  # on the grid
    assert m.gains().shape == (2, 0)  # each block is returned once
    # silence in both: 0 dB, not a division by zero
    s = LevelMeter(1, HOP, g)
    s.add_input(np.zeros((1, g * HOP)))
    s.add_output(np.zeros((1, g * HOP)))
    assert s.gains().tolist() == [[0.0]]


@pytest.mark.parametrize("seed", range(5))
def test_gain_stage_is_exact_for_any_push_pattern(seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = int(rng.integers(1, 6))
    frames = int(rng.integers(1, 40))
    y = rng.standard_normal((2, frames * HOP)).astype(np.float32)
    gains = rng.uniform(-20, 20, size=(2, -(-frames // g))).astype(np.float32)
    a = GainStage(2, HOP, g)
    a.add_gains(gains)
    whole = a.push(y)
    b = GainStage(2, HOP, g)
    parts, added = [], 0
    for s in pushes(rng, y.shape[1]):
        need = -(-s.stop // (g * HOP))  # add gains just in time, in pieces
        if need > added:
            b.add_gains(gains[:, added:need])
            added = need
        parts.append(b.push(y[:, s]))
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)


def test_gain_stage_scales_many_channels_in_slices() -> None:
    """A push of more samples than one slice (all channels together) gives what pushes of
    one frame each give; its float64 temporaries stay a slice's size."""
    from flowdec.dsp.level import _SLICE

    rng = np.random.default_rng(3)
    y = rng.standard_normal((64, 3 * _SLICE // 64)).astype(np.float32)
    gains = rng.uniform(-20, 20, size=(64, -(-y.shape[1] // (3 * HOP)))).astype(np.float32)
    a, b = GainStage(64, HOP, 3), GainStage(64, HOP, 3)
    a.add_gains(gains)
    b.add_gains(gains)
    frames = [b.push(y[:, i : i + HOP]) for i in range(0, y.shape[1], HOP)]
    np.testing.assert_array_equal(a.push(y), np.concatenate(frames, axis=1))


@pytest.mark.parametrize("seed", range(5))
def test_meter_chunked_equals_one_shot(seed: int) -> None:
    rng = np.random.default_rng(seed + 10)
    g = int(rng.integers(1, 6))
    frames = int(rng.integers(1, 40))
    x = rng.standard_normal((1, frames * HOP - int(rng.integers(0, HOP)))).astype(np.float32)
    y = (rng.standard_normal((1, frames * HOP)) * 0.3).astype(np.float32)
    one = LevelMeter(1, HOP, g)
    one.add_input(x)
    one.add_output(y)
    ref = np.concatenate([one.gains(), one.finish()], axis=1)
    many = LevelMeter(1, HOP, g)
    got = []
    px, py = pushes(rng, x.shape[1]), pushes(rng, y.shape[1])
    for i in range(max(len(px), len(py))):
        if i < len(px):
            many.add_input(x[:, px[i]])
        if i < len(py):
            many.add_output(y[:, py[i]])
        got.append(many.gains())
    got.append(many.finish())
    np.testing.assert_array_equal(np.concatenate(got, axis=1), ref)


def test_gain_curve_holds_within_blocks_and_ramps_at_block_starts() -> None:
    g = 2
    st = GainStage(1, HOP, g)
    st.add_gains(np.array([[6.0, -6.0, -6.0]]))
    curve = 20 * np.log10(st.push(np.ones((1, 3 * g * HOP), np.float32))[0].astype(np.float64))
    np.testing.assert_allclose(curve[: g * HOP], 6.0, atol=1e-5)  # block 0: no ramp
    ramp = curve[g * HOP : (g + 1) * HOP]  # first frame of block 1: 6 → −6 dB
    assert np.all(np.diff(ramp) < 0) and ramp[0] == pytest.approx(6, abs=0.02)
    assert ramp[-1] == pytest.approx(-6, abs=0.02)
    np.testing.assert_allclose(curve[(g + 1) * HOP :], -6.0, atol=1e-5)  # equal gains: flat
    with pytest.raises(ValueError, match="add the gains of a block before its audio"):
        st.push(np.ones((1, 1), np.float32))


@pytest.fixture(scope="module")
def codec(tiny_codec: Codec) -> Codec:
    """The round trip needs a model, not the shipped model's quality: the tiny random one."""
    return tiny_codec


def test_codec_round_trip_restores_loudness_per_block(codec: Codec) -> None:
    """Whatever the weights, the encoder measures what its decoder loses and the decoder puts
    it back, with or without the postfilter: K-weighted energy per second (one gain block)
    within half a dB of the input."""
    rng = np.random.default_rng(3)
    sr = 48000
    t = np.arange(3 * sr) / sr
    x = (0.2 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))
         + 0.05 * rng.standard_normal(t.size)).astype(np.float32)[None]
    plain = codec.decode(codec.encode(x, sr, 6.0, frames_per_gain=0), postfilter=False)
    stream = codec.encode(x, sr, 6.0)
    assert stream.gains_db is not None and stream.gains_db.shape == (1, 4)
    y = codec.decode(stream, postfilter=False)
    ref = [k_weighted_energy(x[0, s : s + sr]) for s in range(0, 3 * sr, sr)]
    ours = [k_weighted_energy(y[0, s : s + sr]) for s in range(0, 3 * sr, sr)]
    np.testing.assert_allclose(10 * np.log10(np.divide(ours, ref)), 0, atol=0.5)
    # the gains are what separates the two decodes
    before = [k_weighted_energy(plain[0, s : s + sr]) for s in range(0, 3 * sr, sr)]
    np.testing.assert_allclose(10 * np.log10(np.divide(ours, before)),
                               stream.gains_db[0, :3], atol=0.3)
    # the postfilter path: the output of each block gets the input's loudness too
    if codec.has_postfilter:
        z = codec.decode(stream, nfe=2, seed=0, postfilter=True)
        post = [k_weighted_energy(z[0, s : s + sr]) for s in range(0, 3 * sr, sr)]
        np.testing.assert_allclose(10 * np.log10(np.divide(post, ref)), 0, atol=0.5)


def _onsets(rng: np.random.Generator, n: int) -> np.ndarray:
    """Silence, quiet noise, loud bursts: the envelope's hard cases."""
    x = np.zeros((2, n), np.float32)
    for _ in range(6):
        a, length = int(rng.integers(0, n)), int(rng.integers(100, n // 3))
        x[:, a : a + length] += (rng.standard_normal((2, min(length, n - a)))
                                 * 10 ** rng.uniform(-3, -0.2)).astype(np.float32)
    return x


@pytest.mark.parametrize("seed", range(4))
def test_peak_normalizer_is_exact_for_any_push_pattern_and_never_overshoots(seed: int) -> None:
    rng = np.random.default_rng(seed)
    hop, n = 384, 30000 + int(rng.integers(0, 384))
    x = _onsets(rng, n)

    def make() -> PeakNormalizer:
        return PeakNormalizer(2, hop, peak_dbfs=0.0, release_db_per_s=20.0, floor_dbfs=-50.0,
                              frame_rate=125.0)

    one = make()
    ref = np.concatenate([one.push(x), one.finish()], axis=1)
    assert ref.shape == x.shape
    # the gain of a frame never exceeds what its own peak allows: nothing above 0 dBFS
    assert np.abs(ref).max() <= 1.0 + 1e-5
    many = make()
    parts = [many.push(x[:, s]) for s in pushes(rng, n)]
    assert sum(p.shape[1] for p in parts) >= n - PeakNormalizer.HOLD_FRAMES * hop
    got = np.concatenate([*parts, many.finish()], axis=1)
    np.testing.assert_array_equal(got, ref)
    # restore undoes it, in any pieces
    back = np.concatenate([many.restore(ref[:, s]) for s in pushes(rng, n)], axis=1)
    np.testing.assert_allclose(back, x, atol=1e-6, rtol=1e-5)


class _Lagging:
    """A stand-in postfilter: scales y by a fixed curve and returns a random part of what it
    holds on each push (the rest at finish), so its output lags its input unevenly."""

    latency = 0

    def __init__(self, curve: np.ndarray, rng: np.random.Generator) -> None:
        self.curve, self.rng = curve, rng
        self.reset()

    def reset(self) -> None:
        self.at = 0
        self.held = np.zeros((self.curve.shape[0], 0), np.float32)

    def push(self, y: np.ndarray) -> np.ndarray:
        n = y.shape[1]
        z = (y * self.curve[:, self.at : self.at + n]).astype(np.float32)
        self.at += n
        self.held = np.concatenate([self.held, z], axis=1)
        k = int(self.rng.integers(0, self.held.shape[1] + 1))
        out, self.held = self.held[:, :k], self.held[:, k:]
        return out

    def finish(self) -> np.ndarray:
        out, self.held = self.held, self.held[:, :0]
        return out


@pytest.mark.parametrize("seed", range(4))
def test_output_level_is_exact_for_any_push_pattern(seed: int) -> None:
    rng = np.random.default_rng(seed + 20)
    g = int(rng.integers(1, 5))
    frames = int(rng.integers(2, 30))
    y = rng.standard_normal((1, frames * HOP)).astype(np.float32)
    curve = rng.uniform(0.3, 2.0, size=(1, frames * HOP))
    z = (y * curve).astype(np.float32)  # what the "postfilter" makes of y
    sent = rng.uniform(-6, 6, size=(1, -(-frames // g))).astype(np.float32)

    one = OutputLevel(1, HOP, g, inner=_Lagging(curve, rng))
    one.add_gains(sent)
    ref = np.concatenate([one.push(y), one.finish()], axis=1)
    assert ref.shape == z.shape
    # outside its ramp frame, block b is z times (transmitted gain + 10·log10(E_y / E_z)),
    # with E the K-weighted energies over the block

    def energy(a: np.ndarray) -> float:
        return float(np.sum(np.abs(np.fft.rfft(a.reshape(-1, HOP), axis=1)) ** 2 @ k_weights(HOP)))

    for b in range(frames // g):
        blk = slice(b * g * HOP, (b + 1) * g * HOP)
        want = sent[0, b] + 10 * np.log10((energy(y[0, blk]) + g * HOP * 1e-10)
                                          / (energy(z[0, blk]) + g * HOP * 1e-10))
        flat = slice(blk.start + (HOP if b else 0), blk.stop)
        if flat.stop > flat.start:
            np.testing.assert_allclose(ref[0, flat], z[0, flat] * 10 ** (want / 20), rtol=1e-4,
                                       atol=1e-6)
    many = OutputLevel(1, HOP, g, inner=_Lagging(curve, rng))
    many.add_gains(sent)
    parts = [many.push(y[:, sl]) for sl in pushes(rng, y.shape[1])]
    parts.append(many.finish())
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), ref)
    many.reset()  # a reset stage starts over
    many.add_gains(sent)
    np.testing.assert_array_equal(np.concatenate([many.push(y), many.finish()], axis=1), ref)
    # the plain path (no inner stage, z = y) only applies the transmitted gains
    plain = OutputLevel(1, HOP, g)
    plain.add_gains(sent)
    stage = GainStage(1, HOP, g)
    stage.add_gains(sent)
    np.testing.assert_array_equal(
        np.concatenate([plain.push(y), plain.finish()], axis=1), stage.push(y))
