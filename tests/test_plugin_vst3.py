"""The built VST3 plugin inside real pedalboard chains, against a real backend.

The backend runs ``FLOWDEC_TEST_MODEL`` if set, else the shipped model, with the postfilter
off unless a test is about the postfilter path: these tests check timing, alignment and
behaviour of the plugin path, not audio quality.
"""

from __future__ import annotations

import gc
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from flowdec.format.bitstream import LIVE_FRAMES_PER_GAIN
from flowdec.stream import LIVE_NFE
from test_plugin_common import (
    EDITOR_CHECK,
    NOT_BUILT,
    RATE,
    VST3,
    backend_cmd,
    codec,
    model_path,
    plugin_latency,
    shm_entries,
    start_backend,
    stop,
    stream_reference,
    wait_socket,
)

pedalboard = pytest.importorskip("pedalboard")
pytestmark = pytest.mark.skipif(not VST3.exists(), reason=NOT_BUILT)

def _model() -> str | None:
    return model_path()


@pytest.fixture()
def sockdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="fdp", dir="/tmp"))  # short: sun_path is 108 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture()
def env(sockdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    sock = sockdir / "b.sock"
    monkeypatch.setenv("FLOWDEC_SOCKET", str(sock))
    monkeypatch.setenv("XDG_STATE_HOME", str(sockdir / "state"))  # the backend's log
    monkeypatch.setenv("FLOWDEC_BACKEND_CMD", "false")  # tests start backends themselves
    monkeypatch.setenv("FLOWDEC_OFFLINE_TIMEOUT_MS", "20000")
    return sock


@pytest.fixture()
def codec_backend(env: Path) -> Iterator[Path]:
    model = _model()
    if model is None:
        pytest.skip("no model: set FLOWDEC_TEST_MODEL")
    proc = start_backend(env, engine="stream", model=model)
    yield env
    stop(proc)


def load() -> pedalboard.ExternalPlugin:
    p = pedalboard.load_plugin(str(VST3))
    p.postfilter = False
    return p


def signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.3 * np.sin(2 * np.pi * 220 * t)[None] + 0.05 * rng.standard_normal((2, t.size))
    return x.astype(np.float32)


def reference(x: np.ndarray, postfilter: bool = False, seed: int = 0,
              bitrate: float = 6.0, chunk_ms: float = 40.0) -> np.ndarray:
    """flowdec.Stream with the plugin's settings, latency removed."""
    return stream_reference(x, postfilter=postfilter, seed=seed, bitrate=bitrate,
                            chunk_ms=chunk_ms)


def meter(p: pedalboard.ExternalPlugin, name: str, accept: Callable[[float], bool],
          timeout: float = 60.0) -> float:
    """A read-only meter's value once ``accept`` holds (meters reach the host ~20×/s; the
    timeout is a hang guard)."""
    deadline = time.monotonic() + timeout
    while True:
        v = float(getattr(p, name))
        if accept(v) or time.monotonic() > deadline:
            return v
        time.sleep(0.02)


def test_parameters_and_state(env: Path) -> None:
    p = load()
    for name in ("bitrate", "nfe", "postfilter", "dry_wet", "seed", "fallback",
                 "force_realtime", "chunk_ms", "margin_ms", "underruns", "connected",
                 "latency_samples", "backend_status"):
        assert name in p.parameters, sorted(p.parameters)
    p.bitrate, p.nfe, p.seed, p.dry_wet = 4.5, 8, 7, 0.25
    q = load()
    q.raw_state = p.raw_state
    assert (q.bitrate, q.nfe, q.seed, q.postfilter) == (4.5, 8, 7, False)
    assert abs(q.dry_wet - 0.25) < 1e-6


def test_defaults_follow_the_model_card(env: Path) -> None:
    import json

    model = _model()
    if model is None:
        pytest.skip("no model")
    card = json.loads((Path(model) / "model_card.json").read_text())
    post = card.get("postfilter") or {}
    p = pedalboard.load_plugin(str(VST3))  # untouched defaults
    assert p.postfilter == bool(post.get("recommended", False))
    assert p.nfe == LIVE_NFE  # a live stream's evaluations, as flowdec.Stream's
    rates = sorted(float(v) for v in card["codec"]["bitrates_kbps"].values())
    assert p.bitrate == (6.0 if 6.0 in rates else rates[-1])
    assert (p.seed, p.dry_wet, p.chunk_ms, p.margin_ms) == (0, 1.0, 40, 30)


def test_latency_settings_are_saved_and_reported(codec_backend: Path) -> None:
    """The chunk length and margin are host parameters kept in the host's state; the
    reported latency is the backend's stream latency plus what the chunk, host block and
    margin need (no floor), and it is the real delay: the render equals flowdec.Stream's."""
    p = load()
    p.chunk_ms, p.margin_ms = 20, 10
    q = load()
    q.raw_state = p.raw_state
    assert (q.chunk_ms, q.margin_ms) == (20, 10)
    x = signal(1.0, seed=6)
    y = q(x, RATE, buffer_size=512)
    assert q.reported_latency_samples == plugin_latency(20, 512, margin_ms=10)
    np.testing.assert_allclose(y, reference(x, chunk_ms=20), atol=2e-4)
    d = load()  # the defaults: 40 ms chunks, 30 ms margin
    d(x[:, :4800], RATE, buffer_size=512)
    assert d.reported_latency_samples == plugin_latency(40, 512)
    assert q.reported_latency_samples < d.reported_latency_samples


def test_cold_start_latency_is_right_from_the_first_block(
        env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No backend runs: the plugin starts it and learns its latency before the first block
    (prepareToPlay waits for the handshake), so an impulse comes back exactly where the
    reported latency says: pedalboard removes the reported latency, a wrong one would shift
    the output. The path is the codec's (postfilter off, the card's default) and the latency
    is that path's own, not padded to the postfilter path's. (pedalboard prepares the plugin
    at 44.1 kHz when it loads it: the render at 48 kHz also checks that a changed latency
    reaches the host before the first block.)"""
    model = _model()
    if model is None:
        pytest.skip("no model")
    monkeypatch.setenv("FLOWDEC_BACKEND_CMD",
                       shlex.join(backend_cmd(env, engine="stream", idle_exit=2.0, model=model)))
    assert not env.exists()
    x = 0.01 * np.random.default_rng(7).standard_normal((2, RATE)).astype(np.float32)
    x[:, 12000] = 0.8  # an impulse over quiet noise
    p = load()
    y = p(x, RATE, buffer_size=256)
    assert p.reported_latency_samples == plugin_latency(40, 256)
    np.testing.assert_allclose(y, reference(x), atol=2e-4)
    # and the impulse is where the zero-delay offline round trip has it: the cross-correlation
    # peaks at lag 0 (±16 samples, 0.3 ms: the live framing differs; a latency error would
    # move it by thousands of samples). Against the input itself the peak moves with the
    # model: the codec rebuilds an impulse's phase only roughly.
    offline = codec(model_path()).roundtrip(x, RATE, 6.0, postfilter=False,
                                            frames_per_gain=LIVE_FRAMES_PER_GAIN)
    a, b = y[0, 8000:16000], offline[0, 8000:16000]
    lags = np.arange(-1500, 1501)
    corr = [np.dot(a[max(0, k):a.size + min(0, k)], b[max(0, -k):b.size - max(0, k)])
            for k in lags]
    assert abs(int(lags[int(np.argmax(corr))])) <= 16
    del p
    gc.collect()
    wait_gone(env)


@pytest.mark.parametrize("channels", [2, 1])
def test_the_reported_latency_is_the_path_in_use(codec_backend: Path, channels: int) -> None:
    """Reported latency = chunk + host block + margin + the backend stream's latency of the
    path the `postfilter` parameter selects: the codec path's (shorter) with it off, the
    postfilter path's with it on. Switching it between renders re-reports the latency before
    the next render's first block, and every render equals flowdec.Stream's for its path, so
    the output is aligned to the latency reported."""
    codec_path = plugin_latency(40, 512, channels=channels)
    post_path = plugin_latency(40, 512, postfilter=True, channels=channels)
    assert codec_path < post_path
    x = signal(0.5, seed=12)[:channels]
    p = load()
    for post, want in ((False, codec_path), (True, post_path), (False, codec_path)):
        p.postfilter = post
        y = p(x, RATE, buffer_size=512)
        assert p.reported_latency_samples == want, post
        np.testing.assert_allclose(y, reference(x, postfilter=post), atol=2e-4)
    # A fresh instance with the postfilter on before its first render (read in prepareToPlay).
    q = pedalboard.load_plugin(str(VST3))
    q.postfilter = True
    y = q(x, RATE, buffer_size=512)
    assert q.reported_latency_samples == post_path
    np.testing.assert_allclose(y, reference(x, postfilter=True), atol=2e-4)


def test_the_editor_says_why_the_backend_cannot_start_and_the_fix(
        env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The editor's status line (the plugin's own editor, opened without a host or window by
    plugin/tests/editor_check.cpp): the error with Python's last line from the backend's log,
    the fix, and where the log is."""
    if not EDITOR_CHECK.exists():
        pytest.skip(NOT_BUILT)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stub = bindir / "python3"
    stub.write_text("#!/bin/sh\necho 'No module named flowdec (stub)' >&2\nexit 1\n")
    stub.chmod(0o755)
    monkeypatch.delenv("FLOWDEC_BACKEND_CMD")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    res = subprocess.run([str(EDITOR_CHECK)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    status, text = res.stdout.split("\n", 1)
    assert status == "status 2"  # failed
    log = env.parent / "state" / "flowdec" / "backend.log"
    for said in ("cannot start", "python3 -I -m flowdec serve` exited with 1",
                 "No module named flowdec (stub)", "pip install flowdec", "FLOWDEC_BACKEND_CMD",
                 str(log), "offline renders are silent"):
        assert said in text, (said, text)


def test_a_backend_that_connects_late_is_adopted_and_reported(
        env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """prepareToPlay stopped waiting before any backend answered: the plugin reports the
    latency without the backend's share. When a backend connects, the plugin takes its
    latency S, restarts its stream and re-reports the total; the next render is aligned (a
    plain delay engine: the wet signal is the input delayed by S = 480)."""
    monkeypatch.setenv("FLOWDEC_CONNECT_TIMEOUT_MS", "0")
    need = 1920 + 512 + 1440  # chunk + block + margin
    p = load()
    x = signal(0.5, seed=9)
    p(x, RATE, buffer_size=512)
    assert p.reported_latency_samples == need
    proc = start_backend(env, engine="delay:480")
    try:
        assert meter(p, "connected", lambda v: v == 1.0) == 1.0
        p.process(x[:, :4800], RATE, buffer_size=512, reset=False)  # the plugin adopts S
        assert meter(p, "latency_samples", lambda v: v == need + 480) == need + 480
        y = p(x, RATE, buffer_size=512)
        assert p.reported_latency_samples == need + 480
        np.testing.assert_array_equal(y, x)
    finally:
        stop(proc)


def test_a_piped_render_returns_while_the_backend_runs(env: Path, tmp_path: Path) -> None:
    """`python render.py | cat` must end when the render does: the backend the plugin
    starts holds none of the host's standard streams and logs to the user's state dir."""
    script = tmp_path / "render.py"
    script.write_text(
        "import numpy as np, pedalboard\n"
        f"p = pedalboard.load_plugin({str(VST3)!r})\n"
        "y = p(np.zeros((2, 4800), np.float32), 48000, buffer_size=512)\n"
        "print('rendered', y.shape, flush=True)\n")
    cmd = [a for a in backend_cmd(env, engine="delay:0", idle_exit=600.0) if a != "--quiet"]
    run_env = dict(os.environ, FLOWDEC_BACKEND_CMD=shlex.join(cmd))
    # capture_output reads both pipes to their end, as `| cat` does (timeout: a hang guard)
    res = subprocess.run([sys.executable, str(script)], capture_output=True, env=run_env,
                         timeout=300)
    try:
        assert res.returncode == 0, res.stderr[-2000:]
        assert b"rendered (2, 4800)" in res.stdout
        pid = _backend_pid(env)  # still serving (idle exit 600 s): the pipes ended before it
        log = env.parent / "state" / "flowdec" / "backend.log"
        assert "listening on" in log.read_text()  # the backend's lines went to its log...
        assert b"listening on" not in res.stdout + res.stderr  # ...not to the host's streams
    finally:
        if env.exists():
            os.kill(_backend_pid(env), 15)
    assert pid > 0
    wait_gone(env)


@pytest.mark.parametrize("block", [64, 512, 4096])
def test_matches_stream_in_a_chain(codec_backend: Path, block: int) -> None:
    x = signal(1.5)
    p = load()
    board = pedalboard.Pedalboard([pedalboard.Gain(gain_db=-6.0), p, pedalboard.Gain(gain_db=6.0)])
    y = board(x, RATE, buffer_size=block)
    # (not "connected": a render ends with reset(), which may drop the link until the next one)
    assert meter(p, "latency_samples", lambda v: v > 0) == p.reported_latency_samples
    assert p.underruns == 0.0  # an offline render waits for every chunk
    ref = reference(pedalboard.Gain(gain_db=-6.0)(x, RATE))
    ref = pedalboard.Gain(gain_db=6.0)(ref, RATE)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, ref, atol=2e-4)


def test_varying_blocks_and_prepare_mid_stream(codec_backend: Path) -> None:
    x = signal(1.5, seed=1)
    p = load()
    sizes = [17, 64, 333, 4096, 1, 1000, 16384, 2048, 511]
    parts, i, k = [], 0, 0
    while i < x.shape[1]:
        n = sizes[k % len(sizes)]
        parts.append(p.process(x[:, i:i + n], RATE, buffer_size=max(n, 512), reset=False))
        i += n
        k += 1
    # Without reset, pedalboard trims the reported latency from its outputs by its own
    # bookkeeping (not exactly the latency with varying blocks): find the offset once, then
    # the whole rest must match, so timing never shifted mid-stream.
    y = np.concatenate(parts, axis=1)
    ref = reference(x)
    s = _align(y, ref)
    n = y.shape[1] - s
    assert n > RATE // 4
    np.testing.assert_allclose(y[:, s:], ref[:, :n], atol=2e-4)


def _align(y: np.ndarray, ref: np.ndarray) -> int:
    """Offset s with y[s:] ≈ ref (least squares over a 0.2 s window)."""
    w = ref[0, RATE // 10:RATE // 10 + RATE // 5]
    errs = [np.sum((y[0, s + RATE // 10:s + RATE // 10 + w.size] - w) ** 2)
            for s in range(0, y.shape[1] - RATE // 10 - w.size)]
    return int(np.argmin(errs))


def test_two_instances_share_one_backend(codec_backend: Path) -> None:
    _two_instances()


def test_two_instances_with_batched_network_calls(env: Path) -> None:
    """The GPU mode (joined batches) forced on a CPU: same results as separate calls."""
    model = _model()
    if model is None:
        pytest.skip("no model: set FLOWDEC_TEST_MODEL")
    proc = start_backend(env, engine="stream", model=model, extra=("--batch", "on"))
    try:
        _two_instances()
    finally:
        stop(proc)


def _two_instances() -> None:
    x1, x2 = signal(2.0, seed=2), signal(2.0, seed=3)
    p1, p2 = load(), load()
    p2.bitrate = 3.0
    o1, o2 = [], []
    for i in range(0, x1.shape[1], 2400):  # interleaved: both streams live at once
        o1.append(p1.process(x1[:, i:i + 2400], RATE, buffer_size=600, reset=False))
        o2.append(p2.process(x2[:, i:i + 2400], RATE, buffer_size=800, reset=False))
    y1, y2 = np.concatenate(o1, axis=1), np.concatenate(o2, axis=1)
    r1, r2 = reference(x1), reference(x2, bitrate=3.0)
    for y, r in ((y1, r1), (y2, r2)):
        s = _align(y, r)
        assert y.shape[1] - s > RATE // 4
        np.testing.assert_allclose(y[:, s:], r[:, :y.shape[1] - s], atol=2e-4)
    y1b = p1(x1, RATE, buffer_size=256)  # reset, then a whole render: the same stream
    np.testing.assert_allclose(y1b, r1, atol=2e-4)


def test_no_backend_in_real_time_gives_the_fallback(env: Path) -> None:
    x = signal(0.5)
    p = load()
    p.force_realtime = True
    t0 = time.monotonic()
    y = p(x, RATE, buffer_size=512)
    assert time.monotonic() - t0 < 10, "must not hang without a backend"
    np.testing.assert_array_equal(y, x)  # dry, latency compensated by pedalboard
    # every 40 ms chunk that came due during the render was a dry fill, and was counted
    chunks = x.shape[1] // 1920
    assert meter(p, "underruns", lambda v: v >= chunks) >= chunks
    assert p.connected == 0.0
    p.fallback = "silence"
    assert np.abs(p(x, RATE, buffer_size=512)).max() == 0.0
    del p
    gc.collect()


def _status(p: pedalboard.ExternalPlugin) -> str:
    return str(p.parameters["backend_status"].string_value)


def test_backend_that_cannot_start_is_reported_and_renders_no_dry_audio(
        env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DAW started outside the venv: the `python3` on PATH has no flowdec. The status
    parameter says "failed", the editor's message names the fix and the log has Python's
    error; an offline render is silent (never dry audio passing as coded) and does not hang."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stub = bindir / "python3"
    stub.write_text("#!/bin/sh\necho 'No module named flowdec (stub)' >&2\nexit 1\n")
    stub.chmod(0o755)
    monkeypatch.delenv("FLOWDEC_BACKEND_CMD")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    x = signal(0.5)
    p = load()
    t0 = time.monotonic()
    y = p(x, RATE, buffer_size=512)
    assert time.monotonic() - t0 < 60, "a failed backend must not be waited for (hang guard)"
    assert np.abs(y).max() == 0.0, "an offline render without the codec must not be dry audio"
    deadline = time.monotonic() + 30
    while _status(p) != "failed" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _status(p) == "failed"
    assert p.connected == 0.0
    log = env.parent / "state" / "flowdec" / "backend.log"
    assert "No module named flowdec (stub)" in log.read_text()
    del p  # an instance keeps trying to start its backend: none outlives the test
    gc.collect()


def test_backend_killed_mid_stream(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    if model is None:
        pytest.skip("no model")
    # The plugin itself starts (and restarts) the backend; it exits 1 s after its last client.
    cmd = backend_cmd(env, engine="stream", idle_exit=1.0, model=model)
    monkeypatch.setenv("FLOWDEC_BACKEND_CMD", shlex.join(cmd))
    monkeypatch.setenv("FLOWDEC_OFFLINE_TIMEOUT_MS", "3000")
    before = shm_entries()
    x = signal(0.4, seed=4)
    p = load()
    ins, outs = [], []

    def render(plugin: pedalboard.ExternalPlugin = p) -> None:
        ins.append(x)
        outs.append(plugin.process(x, RATE, buffer_size=480, reset=False))

    render()  # starts the backend (prepare waits for it)
    render()
    pid = _backend_pid(env)
    os.kill(pid, 9)
    t0 = time.monotonic()
    killed_at = sum(o.shape[1] for o in outs)
    for _ in range(3):
        render()
    assert time.monotonic() - t0 < 20, "no hang"
    n = 1920

    def dry_chunks() -> list[bool]:
        # The input is x repeated: a dry chunk is exactly a (circular) piece of x.
        y = np.concatenate(outs, axis=1)
        return [_is_piece_of(y[:, i:i + n], x) for i in range(0, y.shape[1] - n, n)]

    k = killed_at // n
    deadline = time.monotonic() + 180  # a hang guard: a restart loads the model
    while time.monotonic() < deadline:  # the plugin restarts the backend with back-off
        dry = dry_chunks()
        if any(dry[k:]) and not any(dry[-4:]):
            break
        time.sleep(0.1)
        render()
    assert _serving(env, pid), "the plugin did not restart the backend"
    dry = dry_chunks()
    assert not any(dry[:k - 1]), "wet before the kill"
    assert any(dry[k:]), "no dry fill after the kill"
    assert not any(dry[-4:]), "no recovery"
    del p, render
    gc.collect()
    wait_gone(env)
    assert shm_entries() == before


def _is_piece_of(chunk: np.ndarray, x: np.ndarray) -> bool:
    """Is ``chunk`` exactly ``x[:, d:d + n]`` (circularly) for some d?"""
    p = x.shape[1]
    a = np.zeros(p)
    a[:chunk.shape[1]] = chunk[0]
    corr = np.fft.irfft(np.fft.rfft(x[0]) * np.conj(np.fft.rfft(a)), p)
    d = int(np.argmax(corr))
    piece = np.take(x, np.arange(d, d + chunk.shape[1]), axis=1, mode="wrap")
    return bool(np.array_equal(chunk, piece))


def _serving(sock: Path, old_pid: int) -> bool:
    try:
        return _backend_pid(sock) != old_pid
    except OSError:
        return False


def _backend_pid(sock: Path) -> int:
    out = subprocess.run(["fuser", str(sock)], capture_output=True, text=True)
    pids = [int(t) for t in out.stdout.split() if t.isdigit()]
    if not pids:  # fuser may be missing: ask the socket's peer
        import socket as so
        import struct
        with so.socket(so.AF_UNIX, so.SOCK_STREAM) as s:
            s.connect(str(sock))
            return int(struct.unpack("3i", s.getsockopt(so.SOL_SOCKET, so.SO_PEERCRED, 12))[0])
    return pids[0]


def wait_gone(sock: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sock.exists(), "the backend did not exit after its last plugin"


def test_plugin_starts_backend_and_leaves_nothing(env: Path, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    monkeypatch.setenv("FLOWDEC_BACKEND_CMD",
                       shlex.join(backend_cmd(env, engine="delay:0", idle_exit=1.0)))
    before = shm_entries()
    x = signal(0.3)
    p1, p2 = load(), load()
    y1, y2 = p1(x, RATE, buffer_size=256), p2(x, RATE, buffer_size=256)
    np.testing.assert_array_equal(y1, x)
    np.testing.assert_array_equal(y2, x)
    wait_socket(env, timeout=1)
    del p1, p2
    gc.collect()
    wait_gone(env)
    assert shm_entries() == before


def test_plugin_starts_an_isolated_backend_without_a_shell(
        env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A `flowdec` package in the host's working directory must not be what runs: the default
    # command is `python3 -I -m flowdec serve`, spawned without a shell, from "/".
    # (numpy too: an editable install's import hook would outrank a planted `flowdec`)
    project = tmp_path / "project"
    hijacked = tmp_path / "hijacked"
    for planted in ("flowdec/__init__.py", "flowdec/__main__.py", "numpy/__init__.py"):
        (project / planted).parent.mkdir(parents=True, exist_ok=True)
        (project / planted).write_text(f"open({str(hijacked)!r}, 'w').close()\n")
    bindir, seen = tmp_path / "bin", tmp_path / "argv"
    bindir.mkdir()
    shim = bindir / "python3"  # records how it was started, then runs the real backend
    shim.write_text("#!/bin/sh\n"
                    f"printf '%s\\n' \"$@\" \"$(pwd)\" > {shlex.quote(str(seen))}\n"
                    f"exec {shlex.quote(sys.executable)} \"$@\" --engine delay:0 --idle-exit 1"
                    " --quiet\n")
    shim.chmod(0o755)
    monkeypatch.delenv("FLOWDEC_BACKEND_CMD")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(project)
    x = signal(0.3)
    p = load()
    y = p(x, RATE, buffer_size=256)
    assert not hijacked.exists(), "the host's working directory chose the backend"
    assert seen.read_text().splitlines() == ["-I", "-m", "flowdec", "serve", "/"]
    np.testing.assert_array_equal(y, x)  # served by the real backend's delay engine
    del p
    gc.collect()
    wait_gone(env)


_JUCE_B64 = ".ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+"


def _juce_xml(block: bytes) -> tuple[bytes, bytes]:
    """(XML text, what follows it) of JUCE's binary XML ("VC2!", length, text, NUL)."""
    import struct

    assert block[:4] == b"VC2!"
    n = struct.unpack_from("<I", block, 4)[0]
    return block[8:8 + n], block[8 + n + 1:]


def _juce_block(xml: bytes, rest: bytes = b"") -> bytes:
    import struct

    return b"VC2!" + struct.pack("<I", len(xml)) + xml + b"\0" + rest


def _component_state(raw_state: bytes) -> tuple[bytes, bytes, re.Match[bytes]]:
    """(the plugin's own state XML, what follows it, where it sits in the VST3 state)."""
    outer, _ = _juce_xml(raw_state)
    m = re.search(rb"<IComponent>(\d+)\.([^<]*)</IComponent>", outer)
    assert m is not None
    v = 0
    for i, ch in enumerate(m.group(2).decode()):
        v |= _JUCE_B64.index(ch) << (6 * i)
    xml, rest = _juce_xml(v.to_bytes(len(m.group(2)) * 6 // 8 + 2, "little")[:int(m.group(1))])
    return xml, rest, m


def _state_attributes(raw_state: bytes) -> dict[str, str]:
    """The attributes of the plugin's saved ``<flowdec>`` element."""
    import xml.etree.ElementTree as ET

    xml, _rest, _m = _component_state(raw_state)
    return dict(ET.fromstring(xml.decode()).attrib)


def _with_state_attributes(raw_state: bytes, attrs: str) -> bytes:
    """The plugin's VST3 state with ``attrs`` added to its saved ``<flowdec>`` element, as a
    crafted project file would carry them (JUCE's base64 and binary XML, rebuilt)."""
    outer, _ = _juce_xml(raw_state)
    xml, rest, m = _component_state(raw_state)
    crafted = xml.replace(b"<flowdec>", b"<flowdec " + attrs.encode() + b">")
    assert crafted != xml
    block = _juce_block(crafted, rest)
    v = int.from_bytes(block, "little")
    enc = "".join(_JUCE_B64[(v >> (6 * i)) & 63] for i in range((len(block) * 8 + 5) // 6))
    comp = f"<IComponent>{len(block)}.{enc}</IComponent>".encode()
    return _juce_block(outer[:m.start()] + comp + outer[m.end():])


def test_a_project_file_cannot_choose_the_backend_command(
        env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWDEC_CONNECT_TIMEOUT_MS", "2000")
    marker = tmp_path / "ran"
    p = load()
    crafted = _with_state_attributes(p.raw_state,
                                     f'backend_command="touch {marker}" backend_latency="7"')
    p.raw_state = crafted
    assert p.raw_state == crafted, "the host did not take the crafted state"
    p(signal(0.1), RATE, buffer_size=256)
    time.sleep(0.5)
    assert not marker.exists(), "the saved state ran a command"


def test_a_saved_backend_latency_is_bounded(env: Path, tmp_path: Path) -> None:
    # 2**31 - 1 samples overflowed the dry line's size: std::length_error out of prepareToPlay
    # (a subprocess: a host may die of that). Remembered for this preparation's key, so it is
    # used: bounded to 10 s.
    code = f"""
import pedalboard, numpy as np, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_plugin_vst3 import _with_state_attributes
p = pedalboard.load_plugin({str(VST3.resolve())!r})
p.postfilter = False
crafted = _with_state_attributes(p.raw_state, 'backend_latency="2147483647" '
                                 'backend_latency_postfilter="2147483647" '
                                 'backend_latency_key="48000/1920/2"')
p.raw_state = crafted
assert p.raw_state == crafted, "the host did not take the crafted state"
y = p(np.zeros((2, 4800), np.float32), 48000, buffer_size=256)
print("rendered", y.shape, p.reported_latency_samples)
"""
    env_vars = dict(os.environ, FLOWDEC_CONNECT_TIMEOUT_MS="500")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env_vars, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"rendered (2, 4800) {1920 + 256 + 1440 + 10 * RATE}" in res.stdout


def test_a_saved_state_remembers_both_paths_latencies(
        env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's state keeps the backend's latency of both paths (for the rate, chunk and
    channel count they were learnt at). Reloaded where no backend answers, the plugin reports
    the remembered latency of the path in use; a state of the plugin before version 2 of the
    protocol (one latency, of the padded path) is not taken for either."""
    model = _model()
    if model is None:
        pytest.skip("no model")
    proc = start_backend(env, engine="stream", model=model)
    try:
        p = load()
        p(signal(0.2), RATE, buffer_size=512)
        deadline = time.monotonic() + 60  # the message thread files them (a hang guard)
        while "backend_latency_postfilter" not in _state_attributes(p.raw_state) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        state = p.raw_state
    finally:
        stop(proc)
    saved = _state_attributes(state)
    assert saved["backend_latency_key"] == "48000/1920/2"
    assert int(saved["backend_latency"]) == plugin_latency(40, 0, margin_ms=0) - 1920
    assert int(saved["backend_latency_postfilter"]) == \
        plugin_latency(40, 0, margin_ms=0, postfilter=True) - 1920
    monkeypatch.setenv("FLOWDEC_CONNECT_TIMEOUT_MS", "500")
    for post in (False, True, False):
        q = load()
        q.raw_state = state
        q.postfilter = post
        q(signal(0.1), RATE, buffer_size=512)  # silent: offline without a backend
        assert q.reported_latency_samples == plugin_latency(40, 512, postfilter=post), post
    old = load()
    old.raw_state = _with_state_attributes(old.raw_state, 'backend_latency="15999" '
                                           'backend_latency_key="48000/1920/2"')
    old(signal(0.1), RATE, buffer_size=512)
    assert old.reported_latency_samples == 1920 + 512 + 1440  # nothing remembered


def test_force_realtime_never_waits(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In real-time mode the plugin never waits for the backend. The backend stays connected
    but is stopped (SIGSTOP): offline, the next chunk would be waited for 10 minutes; in
    real-time mode the render comes back (a hang guard, not a budget) and every chunk the
    stopped backend did not answer is the dry fallback, counted as an under-run."""
    import signal as sig
    import threading

    monkeypatch.setenv("FLOWDEC_OFFLINE_TIMEOUT_MS", "600000")
    proc = start_backend(env)  # delay:0: the wet signal is the input, as exact as the dry one
    try:
        p = load()
        p.force_realtime = True
        x = signal(0.4, seed=5)
        p.process(x, RATE, buffer_size=512, reset=False)
        assert meter(p, "connected", lambda v: v == 1.0) == 1.0
        before = meter(p, "underruns", lambda v: True)
        os.kill(proc.pid, sig.SIGSTOP)
        xs = np.tile(x, (1, 10))
        got: list[np.ndarray] = []
        t = threading.Thread(target=lambda: got.append(
            p.process(xs, RATE, buffer_size=512, reset=False)))
        t.start()
        t.join(300)
        waited = t.is_alive()
        os.kill(proc.pid, sig.SIGCONT)
        t.join()
        assert not waited, "real-time mode waited for the stopped backend"
        assert got
        # most of the render's 100 chunks were sent while the backend was stopped (those
        # played first may have been answered before the stop)
        half = xs.shape[1] // 1920 // 2
        assert meter(p, "underruns", lambda v: v - before >= half) - before >= half
    finally:
        os.kill(proc.pid, sig.SIGCONT)
        stop(proc)
