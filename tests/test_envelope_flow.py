"""The envelope flow (issue 18): band levels, gains, the sampler and the training step."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flowdec.train import band_envelope as be  # noqa: E402
from flowdec.train.envelope_flow import (  # noqa: E402
    DB_PER_UNIT,
    EnvelopeFlowConfig,
    EnvelopeFlowNet,
    estimate_sigma,
    flow_loss,
    postfilter_signal,
    sample,
)
from flowdec.train.train_envelope_flow import LevelCrops, prepare_levels  # noqa: E402


def _signal(seed: int, seconds: float = 1.0) -> np.ndarray:
    """Noise through a slowly moving resonance plus a tone: a spectrum with an envelope."""
    rng = np.random.default_rng(seed)
    n = int(48000 * seconds)
    t = np.arange(n) / 48000
    noise = np.convolve(rng.standard_normal(n), np.hanning(9), "same") * 0.05
    tone = 0.3 * np.sin(2 * np.pi * (440 + 200 * seed) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * t))
    return (noise + tone).astype(np.float32)


def _tiny(bands: int = 16) -> EnvelopeFlowConfig:
    cfg = EnvelopeFlowConfig(bands=bands, channels=16, dilations=(1, 2), t_embed=8)
    cfg.sigma = [0.4] * cfg.n_bands
    return cfg


def test_impose_own_envelope_is_identity() -> None:
    x = _signal(0)
    assert np.abs(be.impose(x, x, 64) - x).max() < 1e-4


def test_impose_moves_band_levels_to_the_target() -> None:
    fine, target = _signal(1), _signal(2) * 0.2  # other lines, 14 dB quieter
    e = be.edges_for(24)
    out = be.impose(fine, target, 24)
    lv = [be.level_db(be.band_power(be.spectrum(s), e))[0, :, 4:-4] for s in (fine, target, out)]
    before = np.abs(lv[0] - lv[1]).mean()
    after = np.abs(lv[2] - lv[1]).mean()
    assert before > 5.0 and after < 0.3 * before


def test_pool_frames_holds_block_means() -> None:
    p = np.arange(10, dtype=np.float64)[None, None]
    np.testing.assert_allclose(be.pool_frames(p, 4)[0, 0], [1.5] * 4 + [5.5] * 4 + [8.5] * 2)


def test_sampler_gives_finite_levels_of_the_input_shape() -> None:
    torch.manual_seed(0)
    cfg = _tiny()
    net = EnvelopeFlowNet(cfg)
    for p in net.out.parameters():  # a random, not a zero, output layer
        torch.nn.init.normal_(p, std=0.1)
    y = torch.randn(2, cfg.n_bands, 40) - 3.0
    sigma = torch.tensor(cfg.sigma)
    for solver, nfe in (("midpoint", 6), ("euler", 4)):
        x = sample(net, y, sigma, nfe, solver, gen=torch.Generator().manual_seed(1))
        assert x.shape == y.shape and torch.isfinite(x).all()
        assert not torch.allclose(x, y)
    with pytest.raises(ValueError, match="too small"):
        sample(net, y, sigma, 1, "midpoint")


def test_untrained_net_at_zero_temperature_returns_the_codec_output() -> None:
    cfg = _tiny()
    net = EnvelopeFlowNet(cfg)  # zero output layer: v = 0, so the sample is the prior mean y
    y = _signal(3)
    out = postfilter_signal(net, y, torch.tensor(cfg.sigma), nfe=4, temperature=0.0)
    assert out.shape == y.shape
    assert np.abs(out - y).max() < 1e-4


def test_flow_loss_decreases_on_synthetic_levels() -> None:
    torch.manual_seed(0)
    cfg = _tiny(8)
    net = EnvelopeFlowNet(cfg)
    sigma = torch.tensor(cfg.sigma)
    y = torch.randn(16, cfg.n_bands, 32) * 0.5 - 3.0
    x = y + torch.linspace(-1.0, 1.0, cfg.n_bands)[None, :, None]  # a fixed tilt to learn
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    t = torch.linspace(0.05, 0.95, 16)

    def held_out() -> float:
        torch.manual_seed(1)
        with torch.no_grad():
            return float(flow_loss(net, x, y, sigma, t))

    start = held_out()
    for _ in range(40):
        loss = flow_loss(net, x, y, sigma)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_out() < 0.6 * start


def test_levels_cache_and_crops(tmp_path: pytest.TempPathFactory) -> None:
    pairs = tmp_path / "pairs"  # type: ignore[operator]
    pairs.mkdir()
    x = np.stack([_signal(s, 0.5) for s in range(3)]).astype(np.float16)
    y = (x.astype(np.float32) * 0.5).astype(np.float16)  # the codec halves the level
    np.save(pairs / "x.npy", x)
    np.save(pairs / "y.npy", y)
    (pairs / "meta.json").write_text(json.dumps({"codec_step": 7, "codebooks": [8] * 3,
                                                 "domains": ["music"] * 3}))
    info = prepare_levels(pairs, tmp_path / "levels", 16)  # type: ignore[operator]
    assert info["codec_step"] == 7
    px = np.load(tmp_path / "levels" / "px.npy")  # type: ignore[operator]
    py = np.load(tmp_path / "levels" / "py.npy")  # type: ignore[operator]
    crops = LevelCrops(px, py, 20, 0.0, 0)
    lx, ly = crops.batch(4)
    assert lx.shape == ly.shape == (4, len(info["edges"]) - 1, 20)  # type: ignore[arg-type]
    # y is x at −6 dB; both normalised by y's peak, so x sits 6 dB above y where it is not silent
    loud = lx > (be.FLOOR_DB + 40) / DB_PER_UNIT
    np.testing.assert_allclose((lx - ly)[loud] * DB_PER_UNIT, 6.02, atol=0.1)
    sigma = estimate_sigma(be.level_db(px), be.level_db(py))
    assert sigma.shape == (px.shape[1],) and np.all(sigma >= 0.1)
    with pytest.raises(ValueError, match="longer than the pairs"):
        LevelCrops(px, py, 1000, 0.0, 0)


def test_impose_jitter_adds_level_errors_of_about_the_requested_size() -> None:
    x = _signal(0)
    e = be.edges_for(64)
    out = be.impose(x, x, 64, jitter_db=3.0, seed=1)
    d = be.level_db(be.band_power(be.spectrum(out), e)) - be.level_db(
        be.band_power(be.spectrum(x), e))
    rms = float(np.sqrt((d[0, :, 4:-4] ** 2).mean()))
    # overlapping frames average part of the independent per-frame errors away
    assert 1.0 < rms < 3.0
