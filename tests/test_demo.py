"""The README's main job: ``flowdec demo`` round-trips the bundled example clip."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pedalboard.io import AudioFile

from flowdec.codec import example_clip


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path) -> Path:
    """These tests need a model, not the shipped model's quality: the tiny random one."""
    return tiny_model_dir


def test_example_clip_is_bundled_with_its_licence() -> None:
    clip = example_clip()
    assert clip.is_file()
    assert "CC0" in (clip.parent / "LICENSE-example.md").read_text()
    with AudioFile(str(clip)) as f:
        assert f.samplerate == 44100 and f.num_channels == 2 and 5.0 < f.duration < 7.0


def test_demo_writes_the_roundtrip(tmp_path: Path, model_dir: Path) -> None:
    out = tmp_path / "demo.wav"
    env = dict(os.environ, FLOWDEC_MODEL=str(model_dir))
    res = subprocess.run([sys.executable, "-m", "flowdec", "demo", "-o", str(out), "--nfe", "2",
                          "--threads", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "kbit/s" in res.stdout and "real time" in res.stdout
    # the coded size and the bitrate it really takes (it printed the decoded WAV's size):
    # 6 kbit/s per channel, stereo, plus the header and the level gains
    m = re.search(r"-> ([\d.]+) kB of \.fdc = ([\d.]+) kbit/s \(([\d.]+) per channel", res.stdout)
    assert m, res.stdout
    kb, kbps, per_channel = map(float, m.groups())
    assert 12.0 < kbps < 12.5 and per_channel == pytest.approx(kbps / 2, abs=0.01)
    assert kb == pytest.approx(kbps * 6.0 / 8, rel=0.05)  # the clip is ~6 s
    assert "MB" not in res.stdout and [p.name for p in tmp_path.iterdir()] == ["demo.wav"]
    with AudioFile(str(example_clip())) as f:
        ref_frames, ref_rate, ref_ch = f.frames, f.samplerate, f.num_channels
    with AudioFile(str(out)) as f:
        assert (f.frames, f.samplerate, f.num_channels) == (ref_frames, ref_rate, ref_ch)
        assert np.isfinite(f.read(f.frames)).all()


def test_demo_output_is_ignored_by_git() -> None:
    """``flowdec demo`` in a checkout leaves example_roundtrip.wav; git should not offer it."""
    ignore = Path(__file__).resolve().parents[1] / ".gitignore"
    if not ignore.is_file():
        pytest.skip("not a source checkout")
    assert "/example_roundtrip.wav" in ignore.read_text().split()
