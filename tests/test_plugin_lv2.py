"""The LV2 build, loaded by a small lilv host (plugin/lv2host/lv2host.c, built by
plugin/build.sh) against a real backend (a plain delay engine: this checks loading and the
audio path, not the codec)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from test_plugin_common import LV2, LV2_URI, LV2HOST, NOT_BUILT, start_backend, stop

pytestmark = pytest.mark.skipif(not (LV2.exists() and LV2HOST.exists()), reason=NOT_BUILT)


def run_host(sock: Path, frames: int = 48000) -> list[str]:
    env = dict(os.environ, FLOWDEC_SOCKET=str(sock), FLOWDEC_BACKEND_CMD="false",
               FLOWDEC_FORCE_REALTIME="0")
    r = subprocess.run([str(LV2HOST), str(LV2), LV2_URI, str(frames), "512"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1].split()
    assert line[0] == "ok", r.stdout
    return line


def test_lv2_loads_and_processes() -> None:
    d = Path(tempfile.mkdtemp(prefix="fdl", dir="/tmp"))
    sock = d / "b.sock"
    proc = start_backend(sock, engine="delay:0")
    try:
        _ok, frames, peak_in, peak_out, latency = run_host(sock)
        assert int(frames) == 48000
        assert float(peak_in) == pytest.approx(0.5, abs=1e-3)
        assert float(peak_out) == pytest.approx(0.5, abs=1e-2)  # the delayed sine came back
        assert float(latency) > 0  # reported on the LV2 latency port
    finally:
        stop(proc)
        shutil.rmtree(d, ignore_errors=True)


def test_lv2_without_backend_outputs_dry() -> None:
    d = Path(tempfile.mkdtemp(prefix="fdl", dir="/tmp"))
    try:
        _ok, _frames, _pin, peak_out, _lat = run_host(d / "none.sock")
        assert float(peak_out) == pytest.approx(0.5, abs=1e-2)
    finally:
        shutil.rmtree(d, ignore_errors=True)
