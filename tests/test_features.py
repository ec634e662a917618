"""Φ / Φ⁻¹: C++ vs numpy reference and torch, round trip, batch == streaming, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdec import _core
from flowdec.dsp import features as ft
from flowdec.dsp.features import STFTConfig, analysis, synthesis
from flowdec.dsp.reference import hann_periodic, istft_ref, stft_ref
from flowdec.pipeline.stages import Stage

SR = 48000
CFG = STFTConfig()


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def make_signals(length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Test audio: noise, a sum of sines, a chirp and a decaying 'plucked' tone."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / SR
    return {
        "noise": rng.standard_normal(length).astype(np.float32) * 0.3,
        "sines": (0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 9000 * t + 1))
        .astype(np.float32),
        "chirp": (0.7 * np.sin(2 * np.pi * (50 * t + 20000 * t**2))).astype(np.float32),
        "pluck": (
            np.exp(-8 * t) * np.sin(2 * np.pi * 196 * t) * (1 + 0.3 * rng.standard_normal(length))
        ).astype(np.float32),
    }


def real_audio() -> np.ndarray | None:
    path = Path(__file__).resolve().parents[1] / "python" / "flowdec" / "data" / "example.flac"
    if not path.exists():
        return None
    sf = pytest.importorskip("soundfile")
    data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data[: 3 * SR, 0])


def _linear(X: np.ndarray, alpha: float = 0.3, beta: float = 0.33) -> np.ndarray:
    """Undo the compression (float64): compressed bins near 0 are ill-conditioned
    (|X|^0.3 turns float32 FFT noise of 1e-7 into 1e-2), so compare in the linear domain."""
    c = X[:, 0].astype(np.float64) + 1j * X[:, 1]
    mag = np.abs(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mag > 0, c * (mag / beta) ** (1 / alpha) / mag, 0)


@pytest.mark.parametrize("kind", ["noise", "sines", "chirp", "pluck"])
def test_analysis_matches_reference(kind: str) -> None:
    x = make_signals(20000)[kind]
    X = analysis(x)
    ref = stft_ref(x)
    assert X.shape == (1, 2, 769, 20000 // 384 + 1) and X.dtype == np.float32
    assert _rel(_linear(X), _linear(ref)) < 1e-5
    if kind == "noise":  # well conditioned everywhere: compare compressed values too
        assert _rel(X, ref) < 2e-5


def test_analysis_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    x = make_signals(30000)["noise"][None].repeat(2, 0)
    x[1] *= 0.1
    spec = torch.stft(torch.from_numpy(x), 1536, 384, window=torch.hann_window(1536),
                      center=True, pad_mode="constant", return_complex=True)
    mag = spec.abs()
    comp = torch.polar(0.33 * mag**0.3, spec.angle()).numpy()
    X = analysis(x)
    assert _rel(X[:, 0] + 1j * X[:, 1], comp) < 2e-5
    y = synthesis(X, 30000)
    ref = torch.istft(spec, 1536, 384, window=torch.hann_window(1536), center=True,
                      length=30000).numpy()
    assert _rel(y, ref) < 1e-5


@pytest.mark.parametrize("kind", ["noise", "chirp"])
def test_synthesis_matches_reference(kind: str) -> None:
    x = make_signals(12345)[kind]
    X = stft_ref(x)
    assert _rel(synthesis(X, 12345), istft_ref(X, 12345)) < 1e-5


@pytest.mark.parametrize("length", [1, 2, 5, 383, 384, 385, 767, 768, 1536, 1537, 4099, 48000])
def test_round_trip_any_length(length: int) -> None:
    for x in make_signals(length, seed=length).values():
        y = synthesis(analysis(x), length)
        assert y.shape == (1, length)
        assert np.isfinite(y).all()
        assert _rel(y[0], x) <= 1e-5


def test_round_trip_real_audio() -> None:
    x = real_audio()
    if x is None:
        pytest.skip("python/flowdec/data/example.flac not present")
    assert _rel(synthesis(analysis(x), len(x))[0], x) <= 1e-5


@pytest.mark.parametrize(
    "cfg",
    [STFTConfig(512, 128, 0.5, 1.0), STFTConfig(1000, 250), STFTConfig(30, 7, 1.0, 1.0),
     STFTConfig(2, 1, 0.3, 0.33), STFTConfig(640, 320)],
)
def test_other_configs_match_reference(cfg: STFTConfig) -> None:
    x = make_signals(3001)["noise"]
    args = (cfg.n_fft, cfg.hop, cfg.alpha, cfg.beta)
    X = analysis(x, cfg)
    ref = stft_ref(x, *args)
    assert _rel(_linear(X, cfg.alpha, cfg.beta), _linear(ref, cfg.alpha, cfg.beta)) < 2e-5
    assert _rel(synthesis(X, 3001, cfg), istft_ref(X, 3001, *args)) < 5e-5


def test_hop_equal_n_fft_is_finite() -> None:
    # The envelope is exactly 0 at frame starts (output 0 there) and tiny next to them.
    cfg = STFTConfig(640, 640)
    x = make_signals(3001)["noise"]
    y = synthesis(analysis(x, cfg), 3001, cfg)[0]
    assert np.isfinite(y).all()
    inner = (np.arange(3001) + 320) % 640
    ok = (inner > 40) & (inner < 600) & (np.arange(3001) < 5 * 640 - 320)  # 5 frames
    assert _rel(y[ok], x[ok]) < 1e-4


def test_zero_signal_gives_zero() -> None:
    X = analysis(np.zeros((2, 1000), np.float32))
    assert not X.any()
    assert not synthesis(X, 1000).any()


@pytest.mark.parametrize("push", [1, 3, 17, 383, 384, 385, 4096])
def test_streaming_equals_batch(push: int) -> None:
    length = 6000 if push < 17 else 20011
    x = np.stack([make_signals(length)["noise"], make_signals(length)["chirp"]])
    X = analysis(x)
    sa = ft.StreamingAnalysis(CFG, channels=2)
    parts = [sa.push(x[:, i : i + push]) for i in range(0, length, push)] + [sa.finish()]
    Xs = np.concatenate(parts, axis=-1)
    assert Xs.shape == X.shape
    assert _rel(Xs, X) <= 1e-6

    y = synthesis(X, length)
    ss = ft.StreamingSynthesis(CFG, channels=2, length=length)
    fpush = max(1, push // 97)
    outs = [ss.push(X[..., i : i + fpush]) for i in range(0, X.shape[-1], fpush)]
    outs.append(ss.finish())
    ys = np.concatenate(outs, axis=-1)
    assert ys.shape == y.shape
    assert _rel(ys, y) <= 1e-6


def test_streaming_varying_blocks_and_reset() -> None:
    rng = np.random.default_rng(3)
    x = make_signals(9000)["pluck"]
    sa = ft.StreamingAnalysis(CFG)
    sa.push(np.ones(500, np.float32))
    sa.reset()
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(0, 900))
        parts.append(sa.push(x[i : i + n]))
        i += n
    parts.append(sa.finish())
    assert _rel(np.concatenate(parts, axis=-1), analysis(x)) <= 1e-6
    # finish() ended that stream: the next one starts from sample 0
    again = np.concatenate([sa.push(x[:4000]), sa.finish()], axis=-1)
    assert _rel(again, analysis(x[:4000])) <= 1e-6


def test_streaming_follows_the_stage_contract() -> None:
    """push / finish() / reset() / latency as every stage: the look-ahead is half a window."""
    sa, ss = ft.StreamingAnalysis(CFG), ft.StreamingSynthesis(CFG, length=3000)
    assert isinstance(sa, Stage) and isinstance(ss, Stage)
    assert sa.latency == ss.latency == CFG.n_fft // 2
    # frame n (centred on sample n*hop) comes out once sample n*hop + latency has arrived
    x = make_signals(6000)["noise"]
    n = 5
    assert sa.push(x[: n * CFG.hop + sa.latency - 1]).shape[-1] == n
    assert sa.push(x[n * CFG.hop + sa.latency - 1 : n * CFG.hop + sa.latency]).shape[-1] == 1


@pytest.mark.parametrize("length", [1000, 2000, 3072, 3100, 3455, 4000])
def test_streaming_synthesis_length(length: int) -> None:
    """The length given at construction cuts (or zero-pads) the stream exactly as
    :func:`synthesis` does, and no push returns a sample past it."""
    X = analysis(make_signals(3300)["sines"])  # 9 frames
    ss = ft.StreamingSynthesis(CFG, length=length)
    outs = [ss.push(X[..., i : i + 1]) for i in range(X.shape[-1])]
    assert sum(o.shape[1] for o in outs) <= length
    y = np.concatenate([*outs, ss.finish()], axis=1)
    assert y.shape == (1, length)
    assert _rel(y, synthesis(X, length)) <= 1e-6


def test_streaming_synthesis_without_length() -> None:
    """No length: N frames make (N - 1) * hop samples, the hop-aligned signal they are the
    analysis of; reset() keeps the setting."""
    x = make_signals(8 * CFG.hop)["chirp"]
    X = analysis(x)
    ss = ft.StreamingSynthesis(CFG)
    ss.push(X[..., :3])
    ss.reset()
    y = np.concatenate([ss.push(X[..., :4]), ss.push(X[..., 4:]), ss.finish()], axis=1)
    assert y.shape == (1, (X.shape[-1] - 1) * CFG.hop) == (1, x.size)
    assert _rel(y, synthesis(X, x.size)) <= 1e-6
    assert ss.finish().shape == (1, 0)  # an empty stream


@pytest.mark.parametrize("length", [-1, 2.5, True, "3000"])
def test_streaming_synthesis_bad_length(length: object) -> None:
    with pytest.raises(ValueError, match="^length: must be None or an int >= 0"):
        ft.StreamingSynthesis(CFG, length=length)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_fft": 1535}, "n_fft"),
        ({"n_fft": 14}, "n_fft"),
        ({"n_fft": 0}, "n_fft"),
        ({"hop": 0}, "hop"),
        ({"hop": 2000}, "hop"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"beta": -1.0}, "beta"),
    ],
)
def test_bad_config(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}"):
        STFTConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="^x"):
        analysis(np.zeros((1, 1, 10)))
    with pytest.raises(ValueError, match="^x"):
        analysis(np.zeros((1, 0)))
    with pytest.raises(ValueError, match="^x"):
        analysis(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="^x"):
        analysis(["a", "b"])
    with pytest.raises(ValueError, match="^X"):
        synthesis(np.zeros((1, 2, 768, 3)), 100)
    with pytest.raises(ValueError, match="^X"):
        synthesis(np.full((1, 2, 769, 3), np.inf), 100)
    with pytest.raises(ValueError, match="^length"):
        synthesis(np.zeros((1, 2, 769, 3)), 0)


_HUGE_POSITIONS = r"""
import numpy as np
from flowdec import _core
big = 2**63 - 1
x = np.ones((1, 4000), np.float32)
X = np.ones((1, 2, 769, 4), np.float32)
calls = {
    "stft": lambda o: _core.stft(x, o, 4, 1536, 384, 0.3, 0.33),
    "istft_ola": lambda o: _core.istft_ola(X, x.copy(), o, 1536, 384, 0.3, 0.33),
    "ola_normalize": lambda o: _core.ola_normalize(x, o, 100, 1536, 384),
    "window_envelope": lambda o: _core.window_envelope(o, 4000, 100, 1536, 384),
}
for name, call in calls.items():
    for o in (big, big - 10, big - 1000, big - 2**40, -big, -big - 1, 2**62, -(2**62)):
        try:
            call(o)
        except ValueError as e:
            assert str(e).startswith(("offset:", "start:")), (name, o, str(e))
        else:
            raise AssertionError(f"{name} accepted offset {o}")
print("ok")
"""


def test_huge_offsets_are_refused_not_overflowed() -> None:
    """Offsets near ±2^63 overflowed ``base + n_fft`` (ola_normalize read out of bounds and
    crashed): refused with a ValueError. Run in a child so a crash fails this test only."""
    r = subprocess.run([sys.executable, "-c", _HUGE_POSITIONS], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-2000:])
    with pytest.raises(ValueError, match="^count"):
        _core.window_envelope(0, 2**61, 10, 1536, 384)


def _envelope_ref(start: int, count: int, n_frames: int, n_fft: int, hop: int) -> np.ndarray:
    """Sum of squared windows of frames 0..n_frames-1 at centred samples start.. (numpy)."""
    w2 = hann_periodic(n_fft) ** 2
    u = start + np.arange(count) + n_fft // 2
    env = np.zeros(count)
    for n in range(n_frames):
        j = u - n * hop
        inside = (j >= 0) & (j < n_fft)
        env[inside] += w2[j[inside]]
    return env


@pytest.mark.parametrize("start", [2**60, -(2**60), 2**40, -3000, 5 * 384 - 900])
def test_far_offsets_within_range_match_reference(start: int) -> None:
    """Positions up to ±2^60 work: frames wholly outside the signal are zero, envelopes and
    overlap-add match numpy."""
    x = make_signals(4000)["noise"][None, :]
    out = _core.stft(x, start, 4, 1536, 384, 0.3, 0.33)
    if start + 3 * 384 + 1536 <= 0 or start >= 4000:
        assert not out.any()
    env = _core.window_envelope(start, 3000, 6, 1536, 384)
    assert _rel(env, _envelope_ref(start, 3000, 6, 1536, 384).astype(np.float32)) <= 1e-6
    acc = np.zeros((1, 4000), np.float32)
    _core.istft_ola(np.ones((1, 2, 769, 2), np.float32), acc, start, 1536, 384, 0.3, 0.33)
    assert acc.any() == (-(384 + 1536) < start < 4000)


def test_converts_dtype_and_layout() -> None:
    x = make_signals(4000)["noise"].astype(np.float64)
    xs = np.stack([x, x])[:, ::-1]  # non-contiguous, float64
    X = analysis(xs)
    assert _rel(X[0], analysis(np.ascontiguousarray(xs[0]).astype(np.float32))[0]) == 0.0
    y = synthesis(np.asfortranarray(X.astype(np.float64)), 4000)
    assert y.dtype == np.float32


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=4),
    dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int16, np.int64, np.bool_]),
)
def test_bindings_never_crash(shape: list[int], dtype: type) -> None:
    arr = np.ones(shape, dtype=dtype)
    for call in (lambda: analysis(arr), lambda: synthesis(arr, 10)):
        try:
            out = call()
        except ValueError:
            continue
        assert np.isfinite(out).all()


@settings(max_examples=25, deadline=None)
@given(length=st.integers(1, 3000), seed=st.integers(0, 2**32 - 1))
def test_round_trip_property(length: int, seed: int) -> None:
    x = np.random.default_rng(seed).standard_normal(length).astype(np.float32)
    assert _rel(synthesis(analysis(x), length)[0], x) <= 1e-5


def test_threads_give_same_result() -> None:
    x = np.stack([make_signals(30000, seed=s)["noise"] for s in range(3)])
    X1, y1 = analysis(x), None
    y1 = synthesis(X1, 30000)
    ft.set_num_threads(2)
    try:
        X2 = analysis(x)
        y2 = synthesis(X2, 30000)
    finally:
        ft.set_num_threads(1)
    assert np.array_equal(X1, X2)
    assert _rel(y2, y1) <= 1e-6
