"""flowdec.Stream: chunk invariance, exact latency, worker overload/recovery, packets.

The codec path equals ``Codec.roundtrip`` to float rounding; the postfilter path differs
from offline only by its shorter window context (tolerances asserted below).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from flowdec.codec import Codec
from flowdec.format.bitstream import (
    LIVE_FRAMES_PER_GAIN,
    decode_header,
    decode_packet,
    encode_header,
)
from flowdec.model.sessions import DecoderStreamNet
from flowdec.stream import (
    CHUNK_QUANTUM,
    DEFAULT_CONTEXT,
    LIVE_NFE,
    RECOVER_AFTER,
    Stream,
    processing_margin,
)

BLOCKS = [3, 17, 128, 441, 512, 1024, 8192, -1]  # -1: random varying sizes
TAIL = 8000  # host samples at the end whose offline reference sees the end-of-file padding


@pytest.fixture(scope="module")
def codec(tiny_codec: Codec) -> Codec:
    """These tests need a model, not the shipped model's quality: the tiny random one."""
    return tiny_codec


def _clip(sr: int, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    tone = 0.3 * np.sin(2 * np.pi * 330 * t) * np.sin(2 * np.pi * 2 * t)
    x = tone + 0.05 * rng.standard_normal((channels, n))
    return x.astype(np.float32)


def _run(s: Stream, x: np.ndarray, block: int, seed: int = 1) -> np.ndarray:
    """Stream x plus latency of silence; returns the latency-compensated output."""
    lat = s.latency_samples
    full = np.concatenate([x, np.zeros((x.shape[0], lat), np.float32)], axis=1)
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < full.shape[1]:
        n = int(rng.integers(1, 2000)) if block < 0 else block
        out.append(s.process(full[:, i : i + n]))
        i += n
    return np.concatenate(out, axis=1)[:, lat : lat + x.shape[1]]


@pytest.mark.parametrize(
    ("sr", "blocks"),
    [(48000, BLOCKS), (44100, [17, 441, -1]), (96000, [3, 8192, -1])],
)
def test_codec_path_equals_offline(codec: Codec, sr: int, blocks: list[int]) -> None:
    x = _clip(sr, 0.4, channels=2)
    ref = codec.roundtrip(x, sr, 6.0, postfilter=False,
                          frames_per_gain=LIVE_FRAMES_PER_GAIN)
    s = Stream(codec, postfilter=False, worker=False)
    s.prepare(sr, 8192, 2)
    first = None
    for b in blocks:
        s.reset()
        y = _run(s, x, b)
        assert s.stats.underrun_samples == 0
        np.testing.assert_allclose(y[:, :-TAIL], ref[:, :-TAIL], atol=1e-4, rtol=0)
        if first is None:
            first = y
        else:  # fixed resampler pieces: independent of the host blocks, bit for bit
            np.testing.assert_array_equal(y, first)


@pytest.mark.parametrize("sr", [48000, 44100, 96000])
@pytest.mark.parametrize("postfilter", [False, True])
def test_fixed_blocks_of_a_chunk_cost_only_the_lookahead(codec: Codec, sr: int,
                                                         postfilter: bool) -> None:
    """Blocks of exactly one chunk (the plugin backend's): the input is pre-rolled so that
    each block completes its own chunk, and the latency drops by about a chunk (at 48 kHz to
    the chains' look-ahead alone). The output is the offline round trip of the pre-rolled
    input, exactly ``latency_samples`` late; another block size is refused."""
    kw = {"postfilter": postfilter, "nfe": 2, "seed": 0} if postfilter else {"postfilter": False}
    free = Stream(codec, worker=False, **kw)  # type: ignore[arg-type]
    free.prepare(sr, 8192, 1)
    s = Stream(codec, worker=False, **kw)  # type: ignore[arg-type]
    block = s.chunk * sr // 48000
    s.prepare(sr, block, 1, fixed_block=True)
    lat, z = s.latency_samples, s.preroll
    assert lat < free.latency_samples - block // 2, (lat, free.latency_samples)
    if sr == 48000:
        assert lat == s.lookahead
    x = _clip(sr, 0.6)
    full = np.pad(x, ((0, 0), (0, lat + block)))
    y = np.concatenate([s.process(full[:, i : i + block])
                        for i in range(0, full.shape[1] - block + 1, block)], axis=1)
    assert s.stats.underrun_samples == 0
    ref = codec.roundtrip(np.pad(x, ((0, 0), (z, 0))), sr, 6.0,  # type: ignore[arg-type]
                          frames_per_gain=LIVE_FRAMES_PER_GAIN, **kw)[:, z:]
    got = y[:, lat : lat + x.shape[1]]
    if sr == 48000 and not postfilter:
        np.testing.assert_allclose(got[:, :-TAIL], ref[:, :-TAIL], atol=1e-4, rtol=0)
    else:  # resamplers and the postfilter's windows: close, and aligned to the sample
        d = got[:, :-TAIL] - ref[:, :-TAIL]
        assert np.sqrt(np.mean(d**2) / np.mean(ref[:, :-TAIL] ** 2)) < 0.05
        lags = range(-20, 21)
        corr = [float(np.dot(y[0, lat + g : lat + g + 8000], ref[0, :8000])) for g in lags]
        assert lags[int(np.argmax(corr))] == 0
    with pytest.raises(ValueError, match="exactly"):
        s.process(np.zeros((1, block - 1), np.float32))


def test_warm_up_runs_the_model_and_leaves_the_stream_alone(codec: Codec) -> None:
    """``warm_up`` runs the networks at the stream's shapes in a twin; the stream's own
    output is the same as without it."""
    x = _clip(48000, 0.5)
    a = Stream(codec, postfilter=False, worker=False)
    a.prepare(48000, 512, 1)
    want = _run(a, x, 512)
    b = Stream(codec, postfilter=False, worker=False)
    b.prepare(48000, 512, 1)
    name = "decoder_stream" if codec.decoder_stream is not None else "decoder"
    real = getattr(codec, name)

    class Counted:  # the decoder, counting its calls
        calls = 0

        def __call__(self, *args: object) -> object:
            Counted.calls += 1
            return real(*args)

        def __getattr__(self, key: str) -> object:
            return getattr(real, key)

    try:
        setattr(codec, name, Counted())
        b.warm_up()
    finally:
        setattr(codec, name, real)
    assert Counted.calls > 0, "warm_up did not run the decoder"
    assert b.stats.chunks == 0
    np.testing.assert_array_equal(_run(b, x, 512), want)


def test_block_size_one(codec: Codec) -> None:
    x = _clip(48000, 0.3)
    ref = codec.roundtrip(x, 48000, 6.0, postfilter=False,
                          frames_per_gain=LIVE_FRAMES_PER_GAIN)
    s = Stream(codec, postfilter=False, worker=False)
    s.prepare(48000, 1, 1)
    y = _run(s, x, 1)
    assert s.stats.underrun_samples == 0
    np.testing.assert_allclose(y[:, :-TAIL], ref[:, :-TAIL], atol=1e-4, rtol=0)


def _postfilter_error(codec: Codec, context: int) -> float:
    """RMS of (stream - offline) over the offline output's RMS, postfilter NFE 6, seed 3, with
    windows of ``context`` frames around each chunk."""
    assert codec.has_postfilter
    x = _clip(48000, 0.6)
    ref = codec.roundtrip(x, 48000, 6.0, nfe=6, seed=3, postfilter=True,
                          frames_per_gain=LIVE_FRAMES_PER_GAIN)
    s = Stream(codec, postfilter=True, nfe=6, seed=3, worker=False, context=context)
    s.prepare(48000, 2048, 1)
    y = _run(s, x, -1)
    d = (y - ref)[:, :-TAIL]
    return float(np.sqrt(np.mean(d**2) / np.mean(ref[:, :-TAIL] ** 2)))


@pytest.mark.parametrize("context", [16, 4])
def test_postfilter_path_close_to_offline(codec: Codec, context: int) -> None:
    """The stream's postfilter gives the offline postfilter's output, same noise, same place:
    the tiny network's output hardly changes with the window's context, so what is left is
    rounding (1.4e-5 at either context); another noise seed gives 0.4, a sample's shift 1.4."""
    rel = _postfilter_error(codec, context)
    assert rel < 1e-4, rel


@pytest.mark.quality  # the shipped postfilter's reach across frames sets these tolerances
@pytest.mark.parametrize(("context", "tol"), [(16, 1e-5), (4, 5e-3), (0, 2e-2)])
def test_shipped_postfilter_path_close_to_offline(shipped_codec: Codec, context: int,
                                                   tol: float) -> None:
    """The shipped network looks further than the tiny one: 16 frames of context keep the
    stream within 1e-5 of offline, 4 frames within 5e-3, none (the default) within 2e-2
    (1.2e-2 at 40-ms chunks; the sound hardly differs: ``benchmarks/bench_live_quality.py``)."""
    rel = _postfilter_error(shipped_codec, context)
    assert rel < tol, rel


@pytest.mark.parametrize("sr", [44100, 48000, 96000])
def test_latency_measured_with_impulse(codec: Codec, sr: int) -> None:
    """The stream's output is the offline (zero-delay) output shifted by exactly latency."""
    n = int(0.5 * sr)
    x = np.zeros((1, n), np.float32)
    x[0, n // 3] = 1.0
    ref = codec.roundtrip(x, sr, 6.0, postfilter=False,
                          frames_per_gain=LIVE_FRAMES_PER_GAIN)[0]
    s = Stream(codec, postfilter=False, worker=False)
    s.prepare(sr, 256, 1)
    lat = s.latency_samples
    total = n + lat
    raw = np.concatenate([s.process(np.pad(x, ((0, 0), (0, lat)))[:, i : i + 256])
                          for i in range(0, total, 256)], axis=1)[0]
    seg = ref[n // 3 - 2000 : n // 3 + 4000]
    lo = n // 3 - 2000
    scores = [float(np.dot(seg, raw[lo + d : lo + d + seg.size]))
              for d in range(lat - 50, lat + 51)]
    assert int(np.argmax(scores)) + lat - 50 == lat
    assert lat > s.chunk * sr // 48000  # at least one chunk


def _impulse_lag(codec: Codec, s: Stream, block: int, channels: int = 1) -> int:
    """The lag that best aligns the stream's output (``worker=False``) for an impulse with
    the offline round trip of the same impulse, searched over everything it returned."""
    sr = s.sample_rate
    n = sr // 2
    x = np.zeros((channels, n), np.float32)
    x[:, n // 3] = 0.7
    ref = codec.roundtrip(x, sr, s.bitrate, postfilter=s.postfilter, nfe=s.nfe, seed=s.seed,
                          frames_per_gain=LIVE_FRAMES_PER_GAIN)[0]
    full = np.pad(x, ((0, 0), (0, 2 * s.latency_samples)))
    y = np.concatenate([s.process(full[:, i : i + block])
                        for i in range(0, full.shape[1] - block + 1, block)], axis=1)[0]
    size = 1 << int(np.ceil(np.log2(y.size + ref.size)))
    xc = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(ref, size)), size)
    return int(np.argmax(xc[: y.size]))


def _default_latencies(codec: Codec, postfilter: bool, block: int) -> tuple[Stream, int]:
    """The default stream (``worker=False``, prepared at 48 kHz mono) and the latency the same
    settings have with the worker thread, which adds the processing margin."""
    live = Stream(codec, postfilter=postfilter, worker=True)
    live.prepare(48000, block, 1)
    live.close()
    s = Stream(codec, postfilter=postfilter, worker=False)
    s.prepare(48000, block, 1)
    assert live.latency_samples == s.latency_samples + processing_margin(s.chunk, block)
    return s, live.latency_samples


@pytest.mark.quality
@pytest.mark.parametrize("block", [64, 256, 1024])
def test_default_codec_path_latency_within_150_ms(shipped_codec: Codec, block: int) -> None:
    """The default codec path at 48 kHz (40-ms chunks) delays audio by at most 150 ms for host
    blocks up to 1024 samples, and an impulse comes out exactly ``latency_samples`` late."""
    s, live = _default_latencies(shipped_codec, False, block)
    assert s.chunk == 1920
    assert live <= 7200, live
    assert _impulse_lag(shipped_codec, s, block) == s.latency_samples


@pytest.mark.quality
@pytest.mark.parametrize("block", [64, 256, 1024])
def test_default_postfilter_path_latency_within_250_ms(shipped_codec: Codec,
                                                       block: int) -> None:
    """With the postfilter the default stream (40-ms chunks, LIVE_NFE, DEFAULT_CONTEXT) delays
    audio by at most 250 ms at 48 kHz for host blocks up to 1024 samples, exactly."""
    s, live = _default_latencies(shipped_codec, True, block)
    assert (s.chunk, s.nfe, s.context) == (1920, LIVE_NFE, DEFAULT_CONTEXT)
    assert live <= 12000, live
    assert _impulse_lag(shipped_codec, s, block) == s.latency_samples


def test_chunk_quanta(codec: Codec) -> None:
    """Chunks are whole 40-ms gain blocks (five postfilter hops) on both paths."""
    for post in (False, True):
        assert Stream(codec, postfilter=post).chunk == CHUNK_QUANTUM == 1920
        assert Stream(codec, postfilter=post, chunk_ms=50).chunk == 2 * CHUNK_QUANTUM


@pytest.mark.parametrize("chunk", [1920, 1764, 7680])
def test_processing_margin_leaves_the_worker_time(chunk: int) -> None:
    """A chunk made ready in one ``process`` call is read ``margin`` samples of its input
    later: simulated over every alignment of chunk ends against host blocks, the calls in
    between span at least one chunk for fixed-size blocks and over half a chunk for blocks of
    random sizes up to ``max_block``."""
    rng = np.random.default_rng(0)
    for max_block in [1, 64, 256, 441, 1000, 1024, 1919, 1920, 2048, 4096]:
        margin = processing_margin(chunk, max_block)
        for sizes in ("fixed", "varying"):
            if sizes == "fixed":
                ends = np.arange(max_block, 40 * chunk + 8 * max_block, max_block)
            else:
                ends = np.cumsum(rng.integers(1, max_block + 1, 80 * chunk // max_block + 64))
            least = None
            for ready in range(chunk, 30 * chunk, 37):  # input count that makes a chunk ready
                trigger = ends[np.searchsorted(ends, ready)]  # first call with that input
                # its first output sample, at input index ready - 1 + margin, is read by the
                # first call ending past it
                read = ends[np.searchsorted(ends, ready + margin, side="left")]
                least = read - trigger if least is None else min(least, read - trigger)
            assert least is not None
            assert least >= (chunk if sizes == "fixed" else chunk // 2 + 1), \
                (max_block, sizes, least)


def test_worker_adds_the_processing_margin(codec: Codec) -> None:
    """A synchronous stream runs each chunk in the call that completes it; the worker's
    latency adds the processing margin and nothing else."""
    a = Stream(codec, postfilter=False, worker=False)
    b = Stream(codec, postfilter=False, worker=True)
    a.prepare(44100, 512, 1)
    b.prepare(44100, 512, 1)
    try:
        assert a.margin == 0
        assert b.latency_samples == a.latency_samples + processing_margin(b.chunk_host, 512)
    finally:
        b.close()


# -- the worker thread: the model's speed is in the test's hands --------------------------------
# A "gate" holds the model up for as long as the test likes; the caller then goes on without
# waiting for it (overload), or in lock step with the worker (the load gone), so what these
# tests see does not depend on the machine's speed. Waits are hang guards, not budgets.
def _until(done: Callable[[], bool], what: str) -> None:
    guard = time.monotonic() + 300
    while not done():
        if time.monotonic() > guard:
            raise AssertionError(f"still waiting after 300 s for {what}")
        time.sleep(0.001)


def _blocks(s: Stream, seconds: float, block: int = 512) -> Iterator[np.ndarray]:
    x = _clip(s.sample_rate, 0.5)
    for done in range(0, int(seconds * s.sample_rate), block):
        yield x[:, done % (x.shape[1] - block) :][:, :block]


def _push_while_held(s: Stream, gate: threading.Event, seconds: float) -> None:
    """The caller goes on for ``seconds`` of audio while the model is held up (``gate``
    closed), then the gate opens: ``process`` must never have waited for the model."""
    def caller() -> None:
        for blk in _blocks(s, seconds):
            out = s.process(blk)
            assert out.shape == blk.shape and np.isfinite(out).all()

    t = threading.Thread(target=caller)
    t.start()
    t.join(300)
    gate.set()
    assert not t.is_alive(), "process() waited for the model"
    t.join()
    _until(s.caught_up, "the worker to catch up")


def _lockstep(s: Stream, seconds: float) -> None:
    """The caller goes on for ``seconds`` of audio, each block once the worker is idle."""
    for blk in _blocks(s, seconds):
        out = s.process(blk)
        assert out.shape == blk.shape and np.isfinite(out).all()
        _until(s.caught_up, "the worker to catch up")


class _HeldNet:
    """A velocity network stand-in that answers while ``gate`` is open; counts its calls."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0

    def __call__(self, x: np.ndarray, y: np.ndarray, t: float) -> np.ndarray:
        self.calls += 1
        self.gate.wait()
        return np.zeros_like(x)


def test_overload_degrades_counts_and_recovers(codec: Codec,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    if not codec.has_postfilter:
        pytest.skip("model has no postfilter")
    net = _HeldNet()
    monkeypatch.setattr(codec, "postfilter_net", net)
    s = Stream(codec, postfilter=True, nfe=6, worker=True, degrade=True)
    s.prepare(48000, 512, 1)
    try:
        _push_while_held(s, net.gate, seconds=3.0)
        st = s.stats
        assert st.degradations >= 1 and st.level >= 1
        assert st.underrun_samples > 0 and st.dropped_chunks > 0
        assert st.errors == 0, st.last_error
        # the load goes: every chunk is on time, and the engine steps back to full quality
        level = st.level
        _lockstep(s, seconds=(RECOVER_AFTER * level + 2) * s.chunk / 48000)
        assert s.stats.recoveries >= level and s.stats.level == 0
        assert s.running
    finally:
        net.gate.set()
        s.close()
    assert not s.running
    # with the worker joined every chunk it started is counted: the degraded ones ran fewer
    # network evaluations than NFE 6
    assert net.calls < 6 * s.stats.chunks


def test_codec_path_overload_drops_late_chunks_and_catches_up(
        codec: Codec, monkeypatch: pytest.MonkeyPatch) -> None:
    """When even the plain decoder falls behind, the chunks whose output is already due are
    dropped (counted); the engine keeps going and stops dropping once the load goes."""
    real = codec.decoder
    gate = threading.Event()

    def held(codes: np.ndarray) -> np.ndarray:
        gate.wait()
        return real(codes)

    class HeldStream:  # the streaming decoder, when the model has one, held up the same way
        def __init__(self, net: DecoderStreamNet) -> None:
            self.net = net

        def initial_state(self, batch: int) -> list[np.ndarray]:
            return self.net.initial_state(batch)

        def __call__(self, x: np.ndarray, first: int, end: int, state: list[np.ndarray]
                     ) -> tuple[np.ndarray, list[np.ndarray]]:
            gate.wait()
            return self.net(x, first, end, state)

    monkeypatch.setattr(codec, "decoder", held)
    if codec.decoder_stream is not None:
        monkeypatch.setattr(codec, "decoder_stream", HeldStream(codec.decoder_stream))
    s = Stream(codec, postfilter=False, worker=True, degrade=True)
    s.prepare(48000, 512, 1)
    try:
        _push_while_held(s, gate, seconds=3.0)
        assert s.stats.dropped_chunks > 0
        assert s.stats.errors == 0, s.stats.last_error
        assert s.stats.degradations == 0  # nothing is cheaper than the codec path
        drops, gaps = s.stats.dropped_chunks, s.stats.underrun_samples
        _lockstep(s, seconds=1.0)  # the load goes: no more drops, no more gaps
        assert (s.stats.dropped_chunks, s.stats.underrun_samples) == (drops, gaps)
        assert s.running
    finally:
        gate.set()
        s.close()


def test_worker_matches_sync_when_fast_enough(codec: Codec) -> None:
    """With time to spare the threaded engine gives the deterministic engine's output."""
    sr = 48000
    x = _clip(sr, 0.6)
    a = Stream(codec, postfilter=False, worker=False)
    a.prepare(sr, 512, 1)
    ya = _run(a, x, 512)
    b = Stream(codec, postfilter=False, worker=True)
    b.prepare(sr, 512, 1)
    lat = b.latency_samples
    full = np.concatenate([x, np.zeros((1, lat), np.float32)], axis=1)
    outs = []
    for i in range(0, full.shape[1], 512):
        outs.append(b.process(full[:, i : i + 512]))
        _until(b.caught_up, "the worker to catch up")  # time to spare
    b.close()
    yb = np.concatenate(outs, axis=1)[:, lat : lat + x.shape[1]]
    assert b.stats.underrun_samples == 0
    np.testing.assert_array_equal(ya, yb)


def test_dropped_chunks_keep_the_output_aligned(codec: Codec,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """After dropped chunks the chains restart at the next chunk; input the encoder had taken
    past that point (the postfilter path looks further ahead than a chunk) comes back as
    silence, never shifted: once the engine has recovered, its output lines up with an
    undisturbed stream's (it was 4480 samples late at 80 ms chunks)."""
    if not codec.has_postfilter:
        pytest.skip("model has no postfilter")
    import soundfile as sf

    from flowdec.audio import resample
    from flowdec.codec import example_clip

    a, rate = sf.read(example_clip(), dtype="float32", always_2d=True)
    x = resample(np.ascontiguousarray(a.T[:1]), rate, 48000)[:, : 48000 * 4]
    kw = {"postfilter": True, "nfe": 2, "chunk_ms": 80.0}
    ref = Stream(codec, worker=False, **kw)  # type: ignore[arg-type]
    ref.prepare(48000, 512, 1)
    want = np.concatenate([ref.process(x[:, i : i + 512]) for i in range(0, x.shape[1], 512)],
                          axis=1)
    real, gate = codec.encoder, threading.Event()

    def held(audio: np.ndarray) -> np.ndarray:
        gate.wait()
        return real(audio)

    monkeypatch.setattr(codec, "encoder", held)
    s = Stream(codec, worker=True, degrade=True, **kw)  # type: ignore[arg-type]
    s.prepare(48000, 512, 1)
    got, i = [], 0
    try:
        while i < 48000:  # a second of audio while the model is held up
            got.append(s.process(x[:, i : i + 512]))
            i += 512
        gate.set()
        while i < x.shape[1]:
            got.append(s.process(x[:, i : i + 512]))
            i += 512
            _until(s.caught_up, "the worker to catch up")
    finally:
        gate.set()
        s.close()
    assert s.stats.dropped_chunks > 0 and s.stats.level == 0
    # the worker's output comes its processing margin later than the synchronous one's
    want = np.pad(want, ((0, 0), (s.latency_samples - ref.latency_samples, 0)))
    n, m = x.shape[1], 32000
    start = n - 8000 - m  # the second last two thirds of a second, long recovered
    out = np.concatenate(got, axis=1)[0, start : start + m]
    lags = np.arange(-8000, 8001, 10)
    corr = [float(np.dot(out, want[0, start + lag : start + lag + m])) for lag in lags]
    assert lags[int(np.argmax(corr))] == 0
    np.testing.assert_allclose(out, want[0, start : start + m], atol=0.05)


def test_burst_of_input_is_late_but_not_dropped(codec: Codec) -> None:
    """A burst (the worker held up while two chunks arrive) makes the engine late, not lossy:
    on the codec path there is nothing cheaper to degrade to, and no chunk whose output is
    not yet due may be thrown away."""
    sr, block = 48000, 512
    s = Stream(codec, postfilter=False, worker=True, degrade=True)
    s.prepare(sr, block, 1)
    x = _clip(sr, 1.0)
    lat = s.latency_samples
    burst = lat + 3 * block  # two chunks and their lookahead; the caller 3 blocks past due
    outs = []
    with s.held():  # the worker cannot start until the whole burst is in
        for i in range(0, burst, block):
            outs.append(s.process(x[:, i : i + block]))
    _until(s.caught_up, "the worker to catch up")
    s.close()
    assert s.stats.chunks >= 2
    assert s.stats.dropped_chunks == 0
    assert s.stats.level == 0 and s.stats.degradations == 0
    read = sum(o.shape[1] for o in outs)
    assert s.stats.underrun_samples == read - lat  # only what was read before chunk 0 was out


def test_packets_carry_the_codes(codec: Codec) -> None:
    got: list[bytes] = []
    lock = threading.Lock()

    def on_packet(p: bytes) -> None:
        with lock:
            got.append(p)

    sr = 48000
    x = _clip(sr, 0.8)
    s = Stream(codec, postfilter=False, worker=False, on_packet=on_packet)
    s.prepare(sr, 1024, 1)
    _run(s, x, 1024)
    assert s.header is not None and got
    h, _ = decode_header(encode_header(s.header))
    assert h.frames_per_gain == LIVE_FRAMES_PER_GAIN
    packets = [decode_packet(h, p)[0] for p in got]
    codes = np.concatenate([p.codes for p in packets], axis=2)
    gains = np.concatenate([p.gains_db for p in packets if p.gains_db is not None], axis=1)
    ref = codec.encode(x, sr, 6.0, frames_per_gain=LIVE_FRAMES_PER_GAIN)
    k = min(codes.shape[2], ref.codes.shape[2]) - 10
    np.testing.assert_array_equal(codes[:, :, :k], ref.codes[:, :, :k])
    # the level gains the stream measured are those of the offline encoder
    assert ref.gains_db is not None and gains.shape[1] * LIVE_FRAMES_PER_GAIN == codes.shape[2]
    b = k // LIVE_FRAMES_PER_GAIN
    np.testing.assert_allclose(gains[:, :b], ref.gains_db[:, :b], atol=0.25)
    assert np.mean(gains[:, :b] == ref.gains_db[:, :b]) > 0.95


def test_contract_errors(codec: Codec) -> None:
    s = Stream(codec, postfilter=False, worker=False)
    with pytest.raises(RuntimeError, match="prepare"):
        s.process(np.zeros((1, 4), np.float32))
    s.prepare(48000, 64, 1)
    with pytest.raises(ValueError, match="block"):
        s.process(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="block"):
        s.process(np.zeros((1, 65), np.float32))
    with pytest.raises(ValueError, match="nfe"):
        Stream(codec, nfe=3, postfilter=True)


def test_process_converts_blocks_like_the_effect(codec: Codec) -> None:
    """int16 blocks are scaled by 2^-15 as FlowDecEffect scales its input (they were copied
    unscaled: a -6 dBFS sine came out at +35 dBFS); complex, object and text blocks and a
    wrong ``out`` are refused."""
    x = _clip(48000, 0.4)
    pcm = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)
    outs = []
    for block in (pcm, pcm.astype(np.float32) / 32768):
        s = Stream(codec, postfilter=False, worker=False)
        s.prepare(48000, 512, 1)
        full = np.concatenate([block, np.zeros((1, s.latency_samples), block.dtype)], axis=1)
        outs.append(np.concatenate([s.process(full[:, i : i + 512])
                                    for i in range(0, full.shape[1], 512)], axis=1))
    assert outs[0].dtype == np.float32 and np.array_equal(outs[0], outs[1])
    assert 0.05 < np.abs(outs[0]).max() < 2.0

    s = Stream(codec, postfilter=False, worker=False)
    s.prepare(48000, 64, 2)
    ok = np.zeros((2, 8), np.float32)
    bad = [ok.astype(np.complex64), ok.astype(object), np.array([["a"] * 8] * 2), None]
    for block in bad:
        with pytest.raises(ValueError, match="^block"):
            s.process(block)  # type: ignore[arg-type]
    for out in (np.zeros((2, 8), np.int16), np.zeros((2, 9), np.float32), [[0.0] * 8] * 2):
        with pytest.raises(ValueError, match="^out"):
            s.process(ok, out=out)  # type: ignore[arg-type]
    assert s.process(ok).shape == (2, 8)


def test_non_finite_input_becomes_counted_silence(codec: Codec) -> None:
    """NaN and infinite samples (a glitching host) do not raise in the audio callback: they
    are processed as zeros, bit for bit, and counted in the stats."""
    x = _clip(48000, 0.5)
    glitched = x.copy()
    glitched[0, 1000:1010] = np.nan
    glitched[0, 5000] = np.inf
    glitched[0, 9000] = -np.inf
    zeroed = np.where(np.isfinite(glitched), glitched, 0).astype(np.float32)
    outs, stats = [], []
    for block in (glitched, zeroed):
        s = Stream(codec, postfilter=False, worker=False)
        s.prepare(48000, 512, 1)
        outs.append(_run(s, block, 512))
        stats.append(s.stats.nonfinite_samples)
    assert np.isfinite(outs[0]).all() and np.array_equal(outs[0], outs[1])
    assert stats == [12, 0]


@contextmanager
def _address_space_cap(extra: int) -> Iterator[None]:
    """Let this process map at most ``extra`` more bytes (a broken check raises MemoryError
    here instead of touching gigabytes of memory)."""
    import resource

    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_prepare_refuses_absurd_sizes(codec: Codec) -> None:
    """prepare(768000, 2**20, 255) allocated ~13.7 GB of rings: refused with the size."""
    s = Stream(codec, postfilter=False, worker=False)
    with _address_space_cap(1 << 30), pytest.raises(ValueError, match="GiB of stream buffers"):
        s.prepare(768000, 2**20, 255)
    for args, name in [((48000, 64.5, 1), "max_block"), ((48000, 0, 1), "max_block"),
                       ((48000, 2**21, 1), "max_block"), ((48000, 64, 256), "channels"),
                       ((48000, 64, True), "channels"), ((1e6, 64, 1), "sample_rate")]:
        with pytest.raises(ValueError, match=f"^{name}"):
            s.prepare(*args)
    with pytest.raises(RuntimeError, match="prepare"):  # nothing half-prepared is used
        s.process(np.zeros((1, 4), np.float32))


@pytest.mark.parametrize("src,dst,piece", [(44100, 48000, 256), (96000, 48000, 256),
                                           (48000, 44100, 7680), (48000, 22050, 3840)])
def test_resampler_release_matches_an_impulse(src: int, dst: int, piece: int) -> None:
    """``resampler_release`` (what the stream's latency uses of soxr) is what an impulse
    through a fresh soxr stream in pieces shows: the output counts after each piece, and the
    impulse at its ideal position (soxr compensates its filter delay), available from the
    first piece whose count passes it on."""
    import soxr

    from flowdec.stream import resampler_release

    pieces = 60
    counts = resampler_release(src, dst, piece, pieces)
    x = np.zeros(piece * pieces, np.float32)
    j = piece * 7 + 13
    x[j] = 1.0
    rs = soxr.ResampleStream(src, dst, 1, dtype="float32", quality="HQ")
    outs, total = [], 0
    for q in range(pieces):
        y = rs.resample_chunk(x[q * piece : (q + 1) * piece])
        total += y.shape[0]
        outs.append(y)
        assert total == counts[q]
        if total > round(j * dst / src):
            break
    y = np.concatenate(outs)
    assert abs(int(np.argmax(np.abs(y))) - j * dst / src) <= 1


def test_sessions_sleep_instead_of_spinning(codec: Codec) -> None:
    """Spinning ORT threads steal the cores from the caller's thread (ms-long process() calls
    on 2 cores, benchmarks/bench_stream.py); every network's session must not spin."""
    nets = [codec.encoder, codec.decoder, codec.postfilter_net]
    for net in nets:
        assert net is not None
        opts = net.session.get_session_options()
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_streaming_decoder_stage_equals_recomputing_stage(codec: Codec) -> None:
    """The model's streaming decoder (each frame decoded once, its context carried as
    network state) gives the recomputing stage's audio, in the same pieces at the same
    pushes, for any push pattern, chunk size and codebook count."""
    from flowdec.pipeline.stages import DecoderStage, StreamingDecoderStage

    assert codec.decoder_stream is not None
    rng = np.random.default_rng(5)
    cases: tuple[tuple[int, int | None, list[int]], ...] = (
        (8, 1, [1] * 40), (4, 3, [2, 7, 1, 5, 30]), (10, 750, [120]), (6, 2, [3, 3, 3, 50, 1]),
        (8, None, [4, 1, 9, 30, 2]))  # None: one run per push, as the streaming engine runs
    for n_q, chunk, pushes in cases:
        codes = rng.integers(0, 2**codec.card.bits_per_code, (2, n_q, sum(pushes)))
        a = codec.decoder_stage(2, n_q, chunk)
        b = DecoderStage(codec.decoder, codec.card, 2, n_q, chunk)
        assert isinstance(a, StreamingDecoderStage)
        at = 0
        for n in pushes:
            ya, yb = a.push(codes[:, :, at : at + n]), b.push(codes[:, :, at : at + n])
            at += n
            assert ya.shape == yb.shape and a.next_hop == b.next_hop
            np.testing.assert_allclose(ya, yb, atol=1e-4, rtol=0)
        ya, yb = a.finish(), b.finish()
        assert ya.shape == yb.shape
        np.testing.assert_allclose(ya, yb, atol=1e-4, rtol=0)
        assert a.next_hop == b.next_hop == sum(pushes)
        a.reset()  # a reset stage starts over: same audio again
        again = np.concatenate([a.push(codes), a.finish()], axis=1)
        whole = codec.decoder(codes)
        np.testing.assert_allclose(again, whole, atol=1e-4, rtol=0)
