"""The output peak limiter: never above the ceiling, the input itself where nothing is loud,
ramps instead of steps, one gain for all channels, and the same output for any push pattern."""

from __future__ import annotations

import numpy as np
import pytest

from flowdec.audio.limiter import CEILING_DB, PeakLimiter, running_min

CEIL = 10 ** (CEILING_DB / 20)


def limit(x: np.ndarray, cuts: list[int] | None = None, rate: int = 48000) -> np.ndarray:
    lim = PeakLimiter(x.shape[0], rate)
    edges = [0, *(cuts or []), x.shape[1]]
    parts = [lim.push(x[:, a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return np.concatenate([*parts, lim.finish()], axis=1)


def bursts(seed: int, channels: int = 2, seconds: float = 1.0) -> np.ndarray:
    """Music-like noise at -20 dBFS with a few short bursts up to +6 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 48000)
    x = rng.standard_normal((channels, n)) * 0.1
    for start in rng.integers(0, n - 500, size=4):
        x[:, start : start + int(rng.integers(1, 400))] *= rng.uniform(5, 20)
    return x.astype(np.float32)


def test_running_min_matches_the_plain_definition() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 5, 40, 333):
        r = rng.random(n)
        for w in (1, 2, 7, 40, 400):
            want = np.array([r[j : j + w].min() for j in range(n - w + 1)])
            np.testing.assert_array_equal(running_min(r, w), want)


@pytest.mark.parametrize("seed", range(3))
def test_ceiling_holds_and_quiet_stretches_are_untouched(seed: int) -> None:
    x = bursts(seed)
    y = limit(x)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.abs(x).max() > 1.5 and np.abs(y).max() <= CEIL * (1 + 1e-6)
    lim = PeakLimiter(2, 48000)
    reach = lim.hold + 2 * lim.lookahead  # how far a loud sample can lower the gain
    loud = np.flatnonzero(np.abs(x).max(axis=0) > CEIL)
    near = np.zeros(x.shape[1], bool)
    for i in loud:
        near[max(0, i - reach) : i + reach + 1] = True
    assert (~near).sum() > x.shape[1] // 2
    np.testing.assert_array_equal(y[:, ~near], x[:, ~near])
    quiet = x * (0.9 / np.abs(x).max())
    np.testing.assert_array_equal(limit(quiet), quiet.astype(np.float32))


def test_any_push_pattern_gives_the_same_output() -> None:
    x = bursts(4)
    y = limit(x)
    rng = np.random.default_rng(1)
    for _ in range(4):
        cuts = sorted(rng.integers(0, x.shape[1], size=int(rng.integers(1, 30))).tolist())
        np.testing.assert_array_equal(limit(x, cuts), y)


def test_one_gain_for_all_channels_moving_in_ramps() -> None:
    x = np.full((2, 48000), 0.5, np.float32)
    x[1] = 0.25
    x[0, 20000] = 1.5  # one over, in the first channel only
    y = limit(x)
    g = y / x
    np.testing.assert_allclose(g[0], g[1], rtol=1e-6)  # the quiet channel ducks with it
    assert g[0, 20000] <= CEIL / 1.5 + 1e-6
    lim = PeakLimiter(2, 48000)
    depth = 1 - CEIL / 1.5
    assert np.abs(np.diff(g[0])).max() <= depth / (lim.lookahead + 1) + 1e-6  # no steps
    assert np.all(g[0, :20000 - lim.lookahead - 1] == 1.0)  # starts lookahead before
    assert np.all(g[0, 20000 + lim.hold + lim.lookahead + 1 :] == 1.0)  # back after the hold


def test_settings_and_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="ceiling_db <= 0"):
        PeakLimiter(1, 48000, ceiling_db=1.0)
    with pytest.raises(ValueError, match=r"expected \[2, samples\]"):
        PeakLimiter(2, 48000).push(np.zeros((1, 10), np.float32))
