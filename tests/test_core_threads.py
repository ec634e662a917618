"""Two Python threads calling the core at once get the same results as one at a time, and
the core's results do not depend on its worker-thread count."""

from __future__ import annotations

import threading

import numpy as np

from flowdec.dsp.features import analysis, get_num_threads, set_num_threads, synthesis
from flowdec.dsp.solver import midpoint_solve
from flowdec.format.bitpack import pack_codes


def test_concurrent_calls_are_correct() -> None:
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((2, 30000)).astype(np.float32) for _ in range(2)]
    codes = rng.integers(0, 1024, 5000)

    def work(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
        X = analysis(x)
        y = synthesis(X, x.shape[1])
        Z = midpoint_solve(X, 0.3, lambda A, B, t: B - A, nfe=4, seed=1)
        return X, y, Z, pack_codes(codes, 10)

    expected = [work(x) for x in xs]
    results: list[object] = [None] * 8
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = work(xs[i % 2])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, res in enumerate(results):
        assert isinstance(res, tuple)
        for got, want in zip(res, expected[i % 2], strict=True):
            if isinstance(want, bytes):
                assert got == want
            else:
                assert np.array_equal(got, want)


def test_results_do_not_depend_on_the_core_thread_count() -> None:
    """Bit-identical analysis, synthesis and solver output for 1, 2 and 3 core threads (the
    overlap-add once split its work by thread count, so its sums ran in another order:
    outputs differed by up to 5e-7)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 200_000)).astype(np.float32)
    before = get_num_threads()
    outs = []
    try:
        for n in (1, 2, 3):
            set_num_threads(n)
            X = analysis(x)
            Z = midpoint_solve(X, 0.3, lambda A, B, t: B - A, nfe=4, seed=1)
            outs.append((X, synthesis(X, x.shape[1]), Z))
    finally:
        set_num_threads(before)
    for other in outs[1:]:
        for a, b in zip(outs[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
