"""StreamResampler: the stage contract (push / finish() / reset()) and chunked == whole."""

from __future__ import annotations

import numpy as np
import pytest

from flowdec.audio import StreamResampler, resample


def _signal(channels: int, n: int) -> np.ndarray:
    t = np.arange(n) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 997 * t) * np.exp(-2 * t)
    noise = np.random.default_rng(1).standard_normal((channels, n)) * 0.1
    return (tone + noise).astype(np.float32)


def _stream(rs: StreamResampler, x: np.ndarray, piece: int) -> np.ndarray:
    parts = [rs.push(x[:, i : i + piece]) for i in range(0, x.shape[1], piece)]
    return np.concatenate([*parts, rs.finish()], axis=1)


@pytest.mark.parametrize(("src", "dst"), [(44100, 48000), (48000, 22050), (96000, 48000)])
@pytest.mark.parametrize("piece", [1, 17, 1000, 50000])
def test_chunked_equals_whole(src: int, dst: int, piece: int) -> None:
    """Any push pattern, then finish(), gives resample() of the whole signal: same length,
    same samples."""
    x = _signal(2, 30011)
    whole = resample(x, src, dst)
    got = _stream(StreamResampler(src, dst, 2), x, piece)
    assert got.shape == whole.shape
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6)


def test_reset_starts_a_new_stream() -> None:
    x = _signal(1, 9000)
    rs = StreamResampler(44100, 48000, 1)
    first = _stream(rs, x, 700)
    np.testing.assert_array_equal(_stream(rs, x, 700), first)  # finish() ended the first
    rs.push(np.ones((1, 5000), np.float32))  # a stream abandoned half way
    rs.reset()
    np.testing.assert_array_equal(_stream(rs, x, 700), first)
    assert first.shape == resample(x, 44100, 48000).shape


def test_equal_rates_pass_through() -> None:
    x = _signal(3, 1234)
    rs = StreamResampler(48000, 48000, 3)
    assert rs.push(x) is x
    assert rs.finish().shape == (3, 0)
