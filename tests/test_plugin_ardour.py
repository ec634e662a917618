"""The plugin in a real DAW, headless: Debian's Ardour 7 bounces a clip through it from a cold
start (no backend running), as LV2 and as VST3, the way a user's session would.

The session is made with Ardour's own tools: ``ardour7-lua`` (its session scripting, with the
"None (Dummy)" audio backend) records three seconds on a stereo track, which gives a session
with a region and a session range; the test then writes its clip into the recorded files,
inserts the plugin, and ``ardour7-export`` bounces the master bus. The clip (a sweep with
clicks) starts after the plugin's latency: Ardour feeds a track from the session start, so
the first ``latency`` samples of a latent plugin's output are what it held before (silence).
Skipped where Ardour is not installed (scripts/test.sh installs it)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from test_plugin_common import LV2, LV2_URI, NOT_BUILT, RATE, VST3, backend_cmd, model_path

LUA = shutil.which("ardour7-lua")
EXPORT = shutil.which("ardour7-export")
VST3_SCANNER = Path("/usr/lib/ardour7/ardour-vst3-scanner")
pytestmark = [
    pytest.mark.skipif(LUA is None or EXPORT is None,
                       reason="Ardour 7 not installed (apt-get install ardour)"),
    pytest.mark.skipif(not (LV2.exists() and VST3.exists()), reason=NOT_BUILT),
]

RECORD = """
local backend = AudioEngine:set_backend ("None (Dummy)", "", "")
assert (backend:set_device_name ("Gaussian White Noise") == 0)
backend:set_sample_rate (48000)
assert (AudioEngine:start (false) == 0)
local s = create_session (os.getenv ("SESSION_DIR"), "take", 48000)
assert (s, "create_session failed")
local t = s:new_audio_track (2, 2, nil, 1, "codec", ARDOUR.PresentationInfo.max_order,
                             ARDOUR.TrackMode.Normal, true):front ()
t:rec_enable_control ():set_value (1, PBD.GroupControlDisposition.NoGroup)
s:maybe_enable_record (false)
s:request_roll (ARDOUR.TransportRequestSource.TRS_UI)
ARDOUR.LuaAPI.usleep (3000000)
s:request_stop (false, false, ARDOUR.TransportRequestSource.TRS_UI)
ARDOUR.LuaAPI.usleep (1000000)
s:disable_record (false, false)
t:rec_enable_control ():set_value (0, PBD.GroupControlDisposition.NoGroup)
assert (t:playlist ():region_list ():size () == 1, "nothing recorded")
s:save_state ("", false, false, false, false, false)
close_session ()
"""

INSERT = """
local backend = AudioEngine:set_backend ("None (Dummy)", "", "")
backend:set_sample_rate (48000)
assert (AudioEngine:start (false) == 0)
local s = load_session (os.getenv ("SESSION_DIR"), "take")
assert (s, "load_session failed")
local t = s:get_remote_nth_route (0)
local kind = ARDOUR.PluginType[os.getenv ("KIND")]
local p = ARDOUR.LuaAPI.new_plugin (s, os.getenv ("PLUGIN"), kind, "")
assert (not p:isnil (), "Ardour did not find the flowdec plugin")
assert (t:add_processor_by_index (p, 0, nil, true) == 0)
p:activate ()
s:save_state ("", false, false, false, false, false)
close_session ()
print ("inserted")
"""


@pytest.fixture()
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="fda", dir="/tmp"))  # short: sun_path is 108 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


def clip(n: int, start: int) -> np.ndarray:
    """A sweep (100 Hz - 6 kHz) with a click every half second, from sample ``start``."""
    t = np.arange(n - start) / RATE
    f0, f1, dur = 100.0, 6000.0, t[-1]
    phase = 2 * np.pi * f0 * dur / np.log(f1 / f0) * (np.exp(t / dur * np.log(f1 / f0)) - 1)
    x = np.zeros((2, n), np.float32)
    x[:, start:] = 0.3 * np.sin(phase)[None] * np.array([[1.0], [0.8]])
    x[:, start + RATE // 4::RATE // 2] += 0.5
    return x


def run(cmd: list[str], env: dict[str, str], timeout: float = 300) -> str:
    """Run an Ardour tool; ardour7-lua exits 0 after a script error, so look for one."""
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Error:" not in out, f"{shlex.join(cmd)}: {out[-3000:]}"
    return out


@pytest.mark.parametrize("kind", ["LV2", "VST3"])
def test_ardour_bounces_the_codec_from_a_cold_start(workdir: Path, kind: str) -> None:
    import soundfile as sf

    from test_plugin_common import plugin_latency, stream_reference

    model = model_path()
    if model is None:
        pytest.skip("no model: set FLOWDEC_TEST_MODEL")
    sock = workdir / "b.sock"
    home = workdir / "home"
    env = dict(os.environ, HOME=str(home), XDG_STATE_HOME=str(workdir / "state"),
               XDG_CONFIG_HOME=str(home / ".config"), LV2_PATH=str(LV2.parent),
               FLOWDEC_SOCKET=str(sock),
               FLOWDEC_BACKEND_CMD=shlex.join(backend_cmd(sock, engine="stream", idle_exit=1.0,
                                                          model=model)))
    env.pop("FLOWDEC_CONNECT_TIMEOUT_MS", None)
    plugin = LV2_URI
    if kind == "VST3":  # Ardour finds a VST3 after its scanner has seen it
        (home / ".vst3").mkdir(parents=True)
        shutil.copytree(VST3, home / ".vst3" / VST3.name)
        scan_env = dict(env, LD_LIBRARY_PATH="/usr/lib/ardour7")
        run([str(VST3_SCANNER), str(home / ".vst3" / VST3.name)], scan_env)
        plugin = "Flowdec"
    session = workdir / "session"
    env["SESSION_DIR"] = str(session)
    (workdir / "record.lua").write_text(RECORD)
    (workdir / "insert.lua").write_text(INSERT)
    assert LUA is not None and EXPORT is not None
    run([LUA, str(workdir / "record.lua")], env)
    takes = sorted(session.glob("interchange/*/audiofiles/*.wav"))
    assert len(takes) == 2, takes
    n = sf.info(str(takes[0])).frames
    latency = plugin_latency(40, 8192)  # Ardour's dummy backend offers blocks of up to 8192
    x = clip(n, start=latency + RATE // 10)
    for ch, take in enumerate(takes):  # ...%L.wav, ...%R.wav
        sf.write(str(take), x[ch], RATE, subtype="FLOAT")
    inserted = run([LUA, str(workdir / "insert.lua")], dict(env, PLUGIN=plugin, KIND=kind))
    assert "inserted" in inserted
    deadline = time.monotonic() + 60  # the backend the insertion started exits (idle 1 s)
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sock.exists(), "a backend still runs: not a cold start"
    out = workdir / "bounce.wav"
    run([EXPORT, "-b", "float", "-o", str(out), str(session), "take"], env)
    y = sf.read(str(out), dtype="float32", always_2d=True)[0].T
    assert y.shape == x.shape
    start = latency + RATE // 10
    body = slice(start + RATE // 10, n - RATE // 10)
    assert np.abs(y[:, body]).max() > 0.1, "silent bounce"
    ref = stream_reference(x)
    # wet: the codec's output, not the dry clip (the codec changes the sweep by far more)
    assert np.abs(y[:, body] - x[:, body]).max() > 0.05, "dry bounce"
    # aligned: the bounce's cross-correlation with the clip peaks at lag 0 on both channels,
    # and as high as flowdec.Stream's own output does. (±16 samples: the codec rebuilds the
    # sweep's phase only roughly, and the plugin's stream began when Ardour's engine did,
    # not at the export, so its frames fall elsewhere than a fresh Stream's; a latency error
    # would move the peak by thousands of samples.)
    for ch in (0, 1):
        lag, peak = _xcorr_peak(y[ch, body], x[ch, body])
        _, ref_peak = _xcorr_peak(ref[ch, body], x[ch, body])
        assert abs(lag) <= 16, f"channel {ch} is {lag} samples off"
        assert peak > 0.8 * ref_peak, f"channel {ch}: not the codec's output ({peak:.2f})"


def _xcorr_peak(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """(lag, normalised correlation) of the cross-correlation peak within ±2000 samples."""
    lags = np.arange(-2000, 2001)
    corr = np.array([np.dot(a[max(0, k):a.size + min(0, k)], b[max(0, -k):b.size - max(0, k)])
                     for k in lags])
    k = int(np.argmax(corr))
    return int(lags[k]), float(corr[k] / np.sqrt(np.dot(a, a) * np.dot(b, b)))
