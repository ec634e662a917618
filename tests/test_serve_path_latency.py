"""The backend's latency is per processing path: the handshake tells the codec path's and the
postfilter path's (each flowdec.Stream's own), and each path's output is aligned to its own
latency with nothing added (no padding of the shorter path to the longer one).

Against a real ``flowdec serve`` running the shipped model (or ``FLOWDEC_TEST_MODEL``).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from flowdec import _core
from test_plugin_common import PyClient, codec, model_path, start_backend, stop

RATE, CHUNK = 48000, 1920  # the plugin's default: 40-ms chunks at 48 kHz


@pytest.fixture(scope="module")
def codec_backend() -> Iterator[Path]:
    model = model_path()
    if model is None:
        pytest.skip("no model: set FLOWDEC_TEST_MODEL")
    d = Path(tempfile.mkdtemp(prefix="fdl", dir="/tmp"))  # short: sun_path is 108 bytes
    proc = start_backend(d / "b.sock", engine="stream", model=model)
    yield d / "b.sock"
    stop(proc)
    shutil.rmtree(d, ignore_errors=True)


def stream(postfilter: bool, channels: int):  # type: ignore[no-untyped-def]
    """flowdec.Stream as the backend makes it for a plugin with default settings."""
    import flowdec

    s = flowdec.Stream(codec(model_path()), bitrate=6.0, postfilter=postfilter, seed=0,
                       chunk_ms=1000.0 * CHUNK / RATE, worker=False, degrade=False)
    s.prepare(RATE, CHUNK, channels, fixed_block=True)
    return s


@pytest.mark.parametrize("channels", [1, 2])
def test_the_handshake_tells_each_paths_stream_latency(codec_backend: Path,
                                                       channels: int) -> None:
    c = PyClient(codec_backend, channels=channels, chunk=CHUNK)
    try:
        assert c.status == _core.PROTOCOL_STATUS_OK, c.message
        assert c.latency == stream(False, channels).latency_samples
        if codec(model_path()).has_postfilter:
            assert c.latency_postfilter == stream(True, channels).latency_samples
            assert c.latency < c.latency_postfilter  # the codec path is not padded to it
        else:
            assert c.latency_postfilter == c.latency
    finally:
        c.close()


@pytest.mark.parametrize("postfilter", [False, True])
def test_each_path_is_aligned_to_its_own_latency(codec_backend: Path, postfilter: bool) -> None:
    """The backend's output for a path is flowdec.Stream's output for it (the plugin's chunks
    as fixed blocks), sample for sample: delayed by that Stream's latency (what the handshake
    told for the path), nothing more."""
    if postfilter and not codec(model_path()).has_postfilter:
        pytest.skip("the model has no postfilter")
    rng = np.random.default_rng(11)
    t = np.arange(12 * CHUNK) / RATE
    x = (0.3 * np.sin(2 * np.pi * 330 * t)[None]
         + 0.05 * rng.standard_normal((2, t.size))).astype(np.float32)
    x[:, 3 * CHUNK + 100] = 0.9  # an impulse
    c = PyClient(codec_backend, channels=2, chunk=CHUNK)
    try:
        told = c.latency_postfilter if postfilter else c.latency
        outs = [c.roundtrip(k, x[:, k * CHUNK:(k + 1) * CHUNK], postfilter=postfilter)
                for k in range(x.shape[1] // CHUNK)]
    finally:
        c.close()
    assert all(o is not None for o in outs)
    y = np.concatenate([o for o in outs if o is not None], axis=1)
    ref = stream(postfilter, 2)
    assert ref.latency_samples == told
    want = np.concatenate([ref.process(x[:, i:i + CHUNK]) for i in range(0, x.shape[1], CHUNK)],
                          axis=1)
    np.testing.assert_allclose(y, want, atol=2e-4)
    # the stream's leading silence, no more: then the codec's output for the pre-roll
    assert np.abs(y[:, : told - ref.preroll]).max() < 1e-6


def test_an_engine_off_its_paths_latency_fails_its_chunks() -> None:
    """An engine whose latency is not the one told for its path would play misaligned: the
    backend fails its chunks instead (the plugin fills them and counts under-runs)."""
    from flowdec.serve import Client, DelayEngine, DelayEngines, Engine, Latencies, Settings

    class Off(DelayEngines):
        def make(self, s: Settings) -> Engine:
            return DelayEngine(s.channels, self.delay + (1 if s.postfilter else 0))

    hello = (2, RATE, 480, 8)
    plugin = _core.ProtocolChannel.create(*hello)
    a, b = socket.socketpair()
    fds = [os.dup(plugin.fd), os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK),
           os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)]
    client = Client(a, _core.protocol_make_hello(*hello), fds, Latencies(10, 10), "test")
    x = np.ones((2, 480), np.float32)
    out = np.zeros_like(x)
    try:
        assert plugin.push_input(0, 1, x, postfilter=False)
        assert plugin.push_input(1, 1, x, postfilter=True)
        assert client.serve(Off(10)) == 2
        got = plugin.pop_output(out)
        assert got is not None and got[0] == 0 and got[2] == 0  # codec path: 10 as told
        np.testing.assert_array_equal(out[:, 10:], x[:, :-10])
        got = plugin.pop_output(out)
        assert got is not None and got[0] == 1 and got[2] != 0  # postfilter path: 11, not 10
    finally:
        client.stop()
        a.close()
        b.close()
        plugin.close()
