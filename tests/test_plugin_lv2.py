"""The LV2 build in LV2 hosts: a small lilv host (plugin/lv2host/lv2host.c, built by
plugin/build.sh) against a plain delay engine (loading, ports, the audio path), and Debian's
``lv2apply`` (lilv-utils) and ``lv2file`` running the codec offline, controls set by symbol."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from flowdec.stream import LIVE_NFE
from test_plugin_common import (
    LV2,
    LV2_URI,
    LV2HOST,
    NOT_BUILT,
    RATE,
    model_path,
    plugin_latency,
    start_backend,
    stop,
    stream_reference,
)

pytestmark = pytest.mark.skipif(not (LV2.exists() and LV2HOST.exists()), reason=NOT_BUILT)


@pytest.fixture()
def sockdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="fdl", dir="/tmp"))  # short: sun_path is 108 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


def host_env(sock: Path) -> dict[str, str]:
    return dict(os.environ, FLOWDEC_SOCKET=str(sock), FLOWDEC_BACKEND_CMD="false",
                FLOWDEC_FORCE_REALTIME="0", XDG_STATE_HOME=str(sock.parent / "state"))


def run_host(sock: Path, frames: int = 48000, settings: tuple[str, ...] = ()) -> list[str]:
    """Run the lilv test host: ["ok", frames, peak_in, peak_out, latency, latency after the
    first block]. ``settings``: "symbol=value" before activation, "symbol=value@frame" from
    that frame on."""
    r = subprocess.run([str(LV2HOST), str(LV2), LV2_URI, str(frames), "512", str(RATE),
                        *settings], env=host_env(sock), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1].split()
    assert line[0] == "ok", r.stdout
    return line


def test_lv2_loads_and_processes(sockdir: Path) -> None:
    sock = sockdir / "b.sock"
    proc = start_backend(sock, engine="delay:0")
    try:
        _ok, frames, peak_in, peak_out, latency, _first = run_host(sock)
        assert int(frames) == 48000
        assert float(peak_in) == pytest.approx(0.5, abs=1e-3)
        assert float(peak_out) == pytest.approx(0.5, abs=1e-2)  # the delayed sine came back
        assert float(latency) > 0  # reported on the LV2 latency port
    finally:
        stop(proc)


def test_lv2_without_backend_outputs_dry_in_real_time(sockdir: Path) -> None:
    _ok, _frames, _pin, peak_out, _lat, _first = run_host(sockdir / "none.sock")
    assert float(peak_out) == pytest.approx(0.5, abs=1e-2)


def test_lv2_latency_port_follows_the_postfilter(sockdir: Path) -> None:
    """The latency port reports the latency of the path in use from the block it takes
    effect in: the codec path's by default, the postfilter path's when the `postfilter`
    control is on at activation or switched on mid-run (real codec backend)."""
    model = model_path()
    if model is None:
        pytest.skip("no model: set FLOWDEC_TEST_MODEL")
    codec_path, post_path = plugin_latency(40, 512), plugin_latency(40, 512, postfilter=True)
    assert codec_path < post_path
    sock = sockdir / "b.sock"
    proc = start_backend(sock, engine="stream", model=model)
    try:
        line = run_host(sock, 8192, ("postfilter=0", "postfilter=1@4096"))
        assert (int(line[5]), int(line[4])) == (codec_path, post_path)
        line = run_host(sock, 4096, ("postfilter=1",))
        assert (int(line[5]), int(line[4])) == (post_path, post_path)
        line = run_host(sock, 4096)  # the card's default: off
        assert (int(line[5]), int(line[4])) == (codec_path, codec_path)
    finally:
        stop(proc)


def test_lv2_ports_need_no_host_features() -> None:
    """Every port is audio or control (lv2apply and lv2file take no others) and the plugin
    requires no feature; the controls carry the card's defaults."""
    r = subprocess.run(["lv2info", LV2_URI], env=dict(os.environ, LV2_PATH=str(LV2.parent)),
                       capture_output=True, text=True, timeout=60)
    if r.returncode == 127 or "command not found" in r.stderr:
        pytest.skip("lv2info (lilv-utils) not installed")
    assert r.returncode == 0, r.stderr
    assert "AtomPort" not in r.stdout
    assert "Required Features" not in r.stdout or "Required Features:\n\n" in r.stdout
    for symbol in ("bitrate", "nfe", "postfilter", "chunk_ms", "freewheel", "latency",
                   "backend_status"):
        assert f'Symbol:      {symbol}' in r.stdout, symbol


@pytest.mark.parametrize("host", ["lv2apply", "lv2file"])
def test_debian_lv2_hosts_run_the_codec_offline(sockdir: Path, host: str) -> None:
    """Debian's lv2apply (lilv-utils) and lv2file render a file through the LV2 with the
    codec: freewheeling (an offline render, waiting for every chunk), bitrate set by its
    control symbol. The output is flowdec.Stream's, delayed by the latency the plugin reports
    (neither host compensates it). lv2file tells the plugin its block size (512 here);
    lv2apply gives no options, so the plugin assumes blocks of up to 4096 samples."""
    import soundfile as sf

    if shutil.which(host) is None:
        pytest.skip(f"{host} not installed (scripts/test.sh installs it)")
    model = model_path()
    if model is None:
        pytest.skip("no model: set FLOWDEC_TEST_MODEL")
    sock = sockdir / "b.sock"
    rng = np.random.default_rng(8)
    t = np.arange(RATE) / RATE
    x = (0.3 * np.sin(2 * np.pi * 330 * t)[None] + 0.05 * rng.standard_normal((2, t.size)))
    x = x.astype(np.float32)
    src, dst = sockdir / "in.wav", sockdir / "out.wav"
    sf.write(src, x.T, RATE, subtype="FLOAT")
    if host == "lv2apply":
        cmd = ["lv2apply", "-i", str(src), "-o", str(dst), "-c", "freewheel", "1",
               "-c", "bitrate", "3", LV2_URI]
        block = 4096
    else:
        cmd = ["lv2file", "-i", str(src), "-o", str(dst), "-b", "512", "-p", "freewheel:1",
               "-p", "bitrate:3", LV2_URI]
        block = 512
    proc = start_backend(sock, engine="stream", model=model)
    try:
        r = subprocess.run(cmd, env=dict(host_env(sock), LV2_PATH=str(LV2.parent)),
                           capture_output=True, text=True, timeout=600)
    finally:
        stop(proc)
    assert r.returncode == 0, r.stderr
    y, rate = sf.read(dst, dtype="float32", always_2d=True)
    assert rate == RATE and y.shape == (x.shape[1], 2)
    lat = plugin_latency(40, block)
    ref = stream_reference(x, bitrate=3.0)
    if host == "lv2file":  # it writes its output clipped to full scale; lv2apply does not
        ref = np.clip(ref, -1.0, 1.0)
    n = x.shape[1] - lat
    assert n > RATE // 4
    np.testing.assert_allclose(y.T[:, lat:], ref[:, :n], atol=2e-4)
    assert np.abs(y.T[:, lat:]).max() > 0.1  # wet audio, not silence


def test_jalv_shows_and_sets_the_controls(sockdir: Path) -> None:
    """Debian's jalv (with a dummy JACK server) runs the LV2 in real time: a control set on
    its command line, the card's defaults and the output ports (the latency with the
    backend's share, the backend's state) read back, not 0.000."""
    import threading
    import time

    if shutil.which("jalv") is None or shutil.which("jackd") is None:
        pytest.skip("jalv or jackd not installed (scripts/test.sh installs them)")
    server = f"flowdec{os.getpid()}"
    env = dict(host_env(sockdir / "b.sock"), JACK_DEFAULT_SERVER=server,
               LV2_PATH=str(LV2.parent), JACK_NO_AUDIO_RESERVATION="1")
    jack = subprocess.Popen(["jackd", "--no-realtime", "-n", server, "-d", "dummy", "-r", "48000",
                             "-p", "512"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    backend = start_backend(sockdir / "b.sock", engine="delay:480")
    lines: list[str] = []
    try:
        jalv = subprocess.Popen(["jalv", "-c", "bitrate=4.5", LV2_URI], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        assert jalv.stdin is not None and jalv.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(jalv.stdout or []), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60  # a hang guard: jackd and the plugin start
        while time.monotonic() < deadline and "backend_status = 1.000000\n" not in lines:
            jalv.stdin.write("controls\nmonitors\n")
            jalv.stdin.flush()
            time.sleep(0.2)
        jalv.stdin.close()
        jalv.wait(30)
        reader.join(10)
        jalv.stdout.close()
    finally:
        stop(backend)
        jack.terminate()
        jack.wait(30)
    out = "".join(lines)
    assert "backend_status = 1.000000" in out, out[-3000:]
    for shown in ("bitrate = 4.500000", "postfilter = 0.000000", f"nfe = {LIVE_NFE}.000000",
                  "chunk_ms = 40.000000", f"latency = {1920 + 512 + 1440 + 480}.000000"):
        assert shown in out, shown
