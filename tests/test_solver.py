"""Solver kernels: RNG, noise init, steps and the midpoint/Euler solve vs numpy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdec import _core
from flowdec.dsp import reference as ref
from flowdec.dsp.solver import euler_step, midpoint_half_step, midpoint_solve, noise_init

F = 769


def feats(B: int = 2, F_: int = F, N: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((B, 2, F_, N)).astype(np.float32)


def test_philox_known_answers() -> None:
    # Random123 known-answer vectors for philox4x32-10.
    kat = [
        ((0, 0, 0, 0, 0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 6, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ]
    for args, want in kat:
        assert _core.philox4x32_10(*args) == want
        got = ref.philox4x32_ref(args[:4], args[4:])
        assert tuple(int(v) for v in got) == want


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 7, 2**64 - 1])
def test_rng_bit_identical_to_reference(seed: int) -> None:
    a = _core.randn_complex(seed, 2, 33, 100, 12345)
    b = ref.randn_complex_ref(seed, 2, 33, 100, 12345)
    np.testing.assert_array_equal(a, b)


def test_rng_statistics() -> None:
    z = _core.randn_complex(3, 4, F, 200)
    re, im = z[:, 0].ravel(), z[:, 1].ravel()
    assert abs(re.mean()) < 0.01 and abs(im.mean()) < 0.01
    assert abs(re.var() - 0.5) < 0.01 and abs(im.var() - 0.5) < 0.01
    assert abs(np.mean(re * im)) < 0.01
    assert abs(np.mean(re**2 + im**2) - 1.0) < 0.01


def test_noise_init_matches_reference() -> None:
    Y = feats()
    sigma = np.linspace(0.57, 0.16, F).astype(np.float32)
    np.testing.assert_array_equal(noise_init(Y, sigma, 42), ref.noise_init_ref(Y, sigma, 42))
    scalar = noise_init(Y, 0.66, 42)
    np.testing.assert_array_equal(scalar, ref.noise_init_ref(Y, np.float32(0.66), 42))


def test_noise_init_seed_and_chunks() -> None:
    Y = feats(N=100)
    a, b, c = noise_init(Y, 0.5, 7), noise_init(Y, 0.5, 7), noise_init(Y, 0.5, 8)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).min() == 0 or not np.array_equal(a, c)
    assert not np.array_equal(a, c)
    parts = [noise_init(Y[..., i : i + 30], 0.5, 7, frame_offset=i) for i in range(0, 100, 30)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=-1), a)


def test_noise_init_out_buffer() -> None:
    Y = feats()
    out = np.empty_like(Y)
    res = noise_init(Y, 0.3, 1, out=out)
    assert res is out
    with pytest.raises(ValueError, match="^out"):
        noise_init(Y, 0.3, 1, out=np.empty((1, 2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="^out"):
        noise_init(Y, 0.3, 1, out=np.empty(Y.shape, np.float64))


def test_steps_match_reference() -> None:
    X, k = feats(seed=1), feats(seed=2)
    np.testing.assert_allclose(
        midpoint_half_step(X, k, 1 / 3), ref.midpoint_half_step_ref(X, k, 1 / 3), rtol=0, atol=1e-6
    )
    want = ref.euler_step_ref(X, k, 1 / 3)
    Xc = X.copy()
    assert euler_step(Xc, k, 1 / 3) is Xc
    np.testing.assert_allclose(Xc, want, rtol=0, atol=1e-6)
    out = np.empty_like(X)
    assert midpoint_half_step(X, k, 0.5, out=out) is out


def test_in_place_requires_float32_buffer() -> None:
    with pytest.raises(ValueError, match="^X"):
        euler_step(np.zeros(4), np.ones(4), 0.1)
    with pytest.raises(ValueError, match="^X"):
        euler_step(np.zeros((4, 4), np.float32)[:, ::2], np.ones((4, 2)), 0.1)


def _target_velocity(target: np.ndarray):  # type: ignore[no-untyped-def]
    def v(X: np.ndarray, Y: np.ndarray, t: float) -> np.ndarray:
        # Straight-line flow to `target`: exact for the rectified path X_t = (1-t) X0 + t X1.
        return ((target - X) / max(1.0 - t, 1e-3)).astype(np.float32)

    return v


@pytest.mark.parametrize(("solver", "nfe"), [("midpoint", 6), ("midpoint", 2), ("euler", 5)])
def test_solve_matches_reference(solver: str, nfe: int) -> None:
    Y, target = feats(N=20), feats(N=20, seed=5)
    v = _target_velocity(target)
    got = midpoint_solve(Y, 0.4, v, nfe=nfe, seed=3, solver=solver)
    want = ref.midpoint_solve_ref(Y, 0.4, v, nfe=nfe, seed=3, solver=solver)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # The straight-line flow reaches the target exactly (up to rounding).
    np.testing.assert_allclose(got, target, atol=1e-4)


def test_solve_linear_ode_accuracy() -> None:
    # dX/dt = -X: midpoint with 3 steps gives (1 - h + h^2/2)^3 X0 exactly.
    Y = feats(N=8)
    X0 = noise_init(Y, 0.5, 9)
    got = midpoint_solve(Y, 0.5, lambda X, Y, t: -X, nfe=6, seed=9)
    h = 1 / 3
    np.testing.assert_allclose(got, X0 * (1 - h + h * h / 2) ** 3, rtol=1e-5, atol=1e-6)


def test_solve_same_seed_same_output() -> None:
    Y = feats(N=10)
    v = lambda X, Y, t: 0.5 * (Y - X)  # noqa: E731
    a = midpoint_solve(Y, 0.3, v, seed=11)
    np.testing.assert_array_equal(a, midpoint_solve(Y, 0.3, v, seed=11))
    assert not np.array_equal(a, midpoint_solve(Y, 0.3, v, seed=12))


def test_solve_bad_arguments() -> None:
    Y = feats(N=4)
    v = lambda X, Y, t: X  # noqa: E731
    with pytest.raises(ValueError, match="^nfe"):
        midpoint_solve(Y, 0.3, v, nfe=5)
    with pytest.raises(ValueError, match="^nfe"):
        midpoint_solve(Y, 0.3, v, nfe=0)
    with pytest.raises(ValueError, match="^solver"):
        midpoint_solve(Y, 0.3, v, solver="rk4")
    with pytest.raises(ValueError, match="^velocity"):
        midpoint_solve(Y, 0.3, lambda X, Y, t: X[..., :2])
    with pytest.raises(ValueError, match="^velocity"):
        midpoint_solve(Y, 0.3, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^k"):
        midpoint_solve(Y, 0.3, lambda X, Y, t: np.full_like(X, np.nan))
    with pytest.raises(ValueError, match="^sigma_y"):
        midpoint_solve(Y, np.ones(5), v)
    with pytest.raises(ValueError, match="^sigma_y"):
        midpoint_solve(Y, -1.0, v)
    with pytest.raises(ValueError, match="^seed"):
        midpoint_solve(Y, 0.3, v, seed=-1)
    with pytest.raises(ValueError, match="^frame_offset"):
        midpoint_solve(Y, 0.3, v, frame_offset=-1)
    with pytest.raises(ValueError, match="^Y"):
        midpoint_solve(Y[0], 0.3, v)
    with pytest.raises(ValueError, match="^Y"):
        noise_init(np.full(Y.shape, np.inf), 0.3, 0)
    with pytest.raises(ValueError, match="^h"):
        euler_step(Y.copy(), Y, float("nan"))
    with pytest.raises(ValueError, match="^k"):
        midpoint_half_step(Y, Y[..., :1], 0.1)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=5),
    dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.bool_]),
    fortran=st.booleans(),
)
def test_kernel_bindings_never_crash(shape: list[int], dtype: type, fortran: bool) -> None:
    arr = np.ones(shape, dtype=dtype)
    if fortran:
        arr = np.asfortranarray(arr)
    for call in (
        lambda: noise_init(arr, 0.5, 0),
        lambda: midpoint_half_step(arr, arr, 0.1),
        lambda: midpoint_solve(arr, 0.5, lambda X, Y, t: X, nfe=2),
    ):
        try:
            out = call()
        except ValueError:
            continue
        assert np.isfinite(out).all()
