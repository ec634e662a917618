"""The HTML listening report: well-formed, every referenced file exists, renders in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the report needs matplotlib (pip install .[eval])")

from flowdec.evaluation.report import write_report  # noqa: E402

RATE = 48000
SYSTEMS = ("reference", "opus", "ndac", "flowdec-nfe6")


class _Collect(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input", "source"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.audio: list[str] = []
        self.img: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "audio":
            self.audio.append(a.get("src") or "")
        if tag == "img":
            self.img.append(a.get("src") or "")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


def fake_eval(out: Path) -> None:
    """What run_eval writes, made without a model: 2 clips × 4 systems, a summary."""
    from scipy.io import wavfile

    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    clips = [("music_a", "music"), ("speech_b", "speech")]
    for name, _ in clips:
        x = 0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 2 * t)
        for i, s in enumerate(SYSTEMS):
            y = x + 0.01 * i * rng.standard_normal(t.size)
            (out / "audio" / name).mkdir(parents=True, exist_ok=True)
            wavfile.write(out / "audio" / name / f"{s}.wav", RATE,
                          (y * 32767).astype(np.int16))
    settings = []
    for b in (3.0, 6.0):
        for s, nfe in (("ndac", 0), ("flowdec", 6), ("opus", 0)):
            dom = {d: {"clips": 1, "si_sdr": b + nfe, "mel_distance": 1 / b,
                       "zimtohrli": 0.01 + 0.001 * b, "actual_kbps": b}
                   for d in ("music", "speech", "all")}
            name = "flowdec-nfe6" if s == "flowdec" else s
            settings.append({"system": s, "bitrate": b, "nfe": nfe, "solver": "", "sigma": "",
                             "name": name, "key": f"{name}@{b:g}", "rtf": 0.1, "domains": dom})
    paired = {"n": 2, "mean_diff": -0.00412, "ci_low": -0.0061, "ci_high": -0.0023,
              "better": 2, "worse": 0}
    comparisons = [{"kind": "postfilter", "a": "ndac@6", "b": "flowdec-nfe6@6",
                    "domains": {d: {"zimtohrli": paired} for d in ("music", "all")}}]
    summary = {"flowdec_version": "0", "model_id": "test", "opus": "opus-tools 0.2",
               "metrics": {"si_sdr": "ok (numpy)", "mel_distance": "ok (numpy)",
                           "zimtohrli": "ok (zimtohrli 0.2.1)",
                           "visqol": "not installed (pip install visqol-python)"},
               "metrics_used": ["si_sdr", "mel_distance", "zimtohrli"], "report_bitrate": 6.0,
               "clips": [{"name": n, "domain": d} for n, d in clips],
               "domains": ["music", "speech"], "settings": settings,
               "paired": {"metrics": ["si_sdr", "mel_distance", "zimtohrli"]},
               "comparisons": comparisons}
    (out / "summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    fake_eval(out)
    return write_report(out)


def test_report_is_well_formed_and_complete(report: Path) -> None:
    p = _Collect()
    p.feed(report.read_text(encoding="utf-8"))
    assert p.errors == [] and p.stack == []
    assert len(p.audio) == 2 * len(SYSTEMS)
    assert len(p.img) == 2 * len(SYSTEMS) + 3  # spectrograms + 3 rate-quality curves
    for src in p.audio + p.img:
        assert not src.startswith(("/", "http")), src  # relative: the folder is portable
        assert (report.parent / src).is_file(), src
    text = report.read_text()
    assert "visqol: not installed" in text
    assert text.index("reference.wav") < text.index("opus.wav") < text.index("ndac.wav")


def test_report_has_zimtohrli_and_paired_tables(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert text.count("<th>zimtohrli ↓</th>") == 3 + 2   # 3 domain tables, 2 paired tables
    assert "<td>0.0160</td>" in text                     # zimtohrli of the 6 kbit/s rows
    paired = text[text.index("<h2>Paired per-clip comparisons</h2>"):
                  text.index("<h2>Rate–quality curves</h2>")]
    assert paired.count("<td>flowdec-nfe6@6 vs ndac@6</td><td>postfilter</td>") == 2
    assert "<td>-0.00412 [-0.0061, -0.0023] 2/2</td>" in paired
    assert "<h3>speech</h3>" not in paired               # nothing compared on speech


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed "
                    "(apt-get install -y chromium)")
def test_report_renders_in_chromium(report: Path) -> None:
    shot = report.parent / "screenshot.png"
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--enable-logging=stderr", "--v=0"]
    r = subprocess.run(base + [f"--screenshot={shot}", "--window-size=1200,2000",
                               report.as_uri()], capture_output=True, text=True,
                       timeout=300)
    assert shot.is_file() and shot.stat().st_size > 10_000, r.stderr[-2000:]
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln or "Failed to load" in ln
               or "ERR_FILE_NOT_FOUND" in ln]
    assert console == [], console
    dom = subprocess.run(base + ["--dump-dom", report.as_uri()], capture_output=True,
                         text=True, timeout=300).stdout
    assert len(re.findall(r"<audio ", dom)) == 2 * len(SYSTEMS)
    assert len(re.findall(r"<img ", dom)) == 2 * len(SYSTEMS) + 3
    artifacts = Path(__file__).resolve().parent.parent / "bench_out"
    if artifacts.is_dir():
        shutil.copy(shot, artifacts / "report_screenshot.png")
