"""Concurrent network calls from several threads joined into one batch (flowdec.model.batching),
with the real ONNX sessions of the tiny random model (the graphs of the shipped one)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from flowdec.codec import Codec
from flowdec.model.batching import Batcher


@pytest.fixture(scope="module")
def codec(tiny_model_dir: Path) -> Codec:
    return Codec(tiny_model_dir, threads=1)


def run_threads(fns: list) -> list:  # type: ignore[type-arg]
    out: list = [None] * len(fns)  # type: ignore[type-arg]
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            out[i] = fns[i]()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return out


def test_participants_calls_run_as_one_batch_with_the_same_results(codec: Codec) -> None:
    # a participant waits until every participant calls, or max_wait_s: long here, so that a
    # thread the scheduler holds up (a loaded machine) is still waited for
    batcher = Batcher(max_wait_s=120.0)
    enc = batcher.wrap(codec.encoder.session)
    pf = batcher.wrap(codec.postfilter_net.session)
    rng = np.random.default_rng(0)
    audio = [(0.1 * rng.standard_normal((1, 640 * 12))).astype(np.float32) for _ in range(3)]
    xs = [rng.standard_normal((2, 2, 769, 8)).astype(np.float32) for _ in range(3)]
    t = np.array([0.25], np.float32)
    # all three register before any calls: otherwise a thread that starts late finds the
    # others done and every call runs alone (a CI failure: 6 runs for 6 calls)
    registered = threading.Barrier(3)

    def work(i: int):  # type: ignore[no-untyped-def]
        def f():  # type: ignore[no-untyped-def]
            with batcher.participant():
                registered.wait(30)
                codes = enc.run(None, {"audio": audio[i]})[0]
                v = pf.run(None, {"x": xs[i], "y": xs[i], "t": t})[0]
            return codes, v
        return f

    got = run_threads([work(i) for i in range(3)])
    assert batcher.calls == 6 and batcher.runs < batcher.calls  # some calls were joined
    for i, (codes, v) in enumerate(got):
        ref_codes = codec.encoder.session.run(None, {"audio": audio[i]})[0]
        ref_v = codec.postfilter_net.session.run(None, {"x": xs[i], "y": xs[i], "t": t})[0]
        assert codes.shape == ref_codes.shape and v.shape == ref_v.shape
        assert (codes == ref_codes).mean() >= 0.98  # argmax near-ties may flip in a batch
        np.testing.assert_allclose(v, ref_v, rtol=1e-4, atol=1e-4)


def test_calls_that_differ_are_not_joined(codec: Codec) -> None:
    """Different frame counts or a different t: separate runs, each correct."""
    batcher = Batcher(max_wait_s=2.0)
    pf = batcher.wrap(codec.postfilter_net.session)
    rng = np.random.default_rng(1)
    cases = [(rng.standard_normal((1, 2, 769, n)).astype(np.float32), np.array([tt], np.float32))
             for n, tt in ((8, 0.5), (16, 0.5), (8, 0.75))]

    def work(x: np.ndarray, t: np.ndarray):  # type: ignore[no-untyped-def]
        def f():  # type: ignore[no-untyped-def]
            with batcher.participant():
                return pf.run(None, {"x": x, "y": x, "t": t})[0]
        return f

    got = run_threads([work(x, t) for x, t in cases])
    assert batcher.runs == 3
    for (x, t), v in zip(cases, got, strict=True):
        ref = codec.postfilter_net.session.run(None, {"x": x, "y": x, "t": t})[0]
        np.testing.assert_allclose(v, ref, rtol=1e-5, atol=1e-5)


def test_waiting_is_bounded(codec: Codec) -> None:
    """A busy participant delays the others by at most max_wait_s; an outside caller never.
    (No bound on how fast a run is: an idle participant that holds on for 10 minutes tells
    apart waiting for it from not waiting, and join timeouts are hang guards.)"""
    batcher = Batcher(max_wait_s=600.0)
    dec = batcher.wrap(codec.decoder.session)
    codes = np.zeros((1, 8, 10), np.int64)
    release = threading.Event()

    def idle_participant() -> None:
        with batcher.participant():
            release.wait(600)

    def call(inside: bool) -> threading.Thread:
        def run() -> None:
            if inside:
                with batcher.participant():
                    dec.run(None, {"codes": codes})
            else:
                dec.run(None, {"codes": codes})
        t = threading.Thread(target=run)
        t.start()
        return t

    t = threading.Thread(target=idle_participant)
    t.start()
    try:
        outside = call(inside=False)  # not a participant: runs at once, however long max_wait
        outside.join(300)
        assert not outside.is_alive(), "an outside caller waited for the idle participant"
        batcher.max_wait_s = 0.2
        t0 = time.monotonic()
        inside = call(inside=True)  # waits for the idle participant, at most max_wait_s
        inside.join(300)
        waited = time.monotonic() - t0
        assert not inside.is_alive(), "a participant waited for the idle one unbounded"
        assert waited >= 0.19  # it did wait (a lower bound: a slow machine only adds)
    finally:
        release.set()
        t.join()


def test_a_failing_run_reaches_every_caller_of_the_batch(codec: Codec) -> None:
    batcher = Batcher(max_wait_s=2.0)
    dec = batcher.wrap(codec.decoder.session)
    bad = np.zeros((1, 8, 10), np.int64) + 5000  # code 5000 of a 1024-entry codebook

    def f():  # type: ignore[no-untyped-def]
        with batcher.participant():
            try:
                dec.run(None, {"codes": bad})
            except Exception as e:  # noqa: BLE001
                return type(e).__name__
            return "no error"

    got = run_threads([f, f])
    assert got[0] == got[1] != "no error"
    with pytest.raises(ValueError, match="output_names"):
        dec.run(["audio"], {"codes": bad})
