"""Evaluation: metrics with known answers, the Opus baseline, and ``flowdec eval`` end to end."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from flowdec.codec import Codec
from flowdec.evaluation import metrics as M
from flowdec.evaluation.opus import align, estimate_delay, opus_roundtrip
from flowdec.evaluation.paired import paired_comparison
from flowdec.evaluation.runner import Setting, comparison_pairs

RATE = 48000


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path) -> Path:
    """These tests need a model, not the shipped model's quality: the tiny random one."""
    return tiny_model_dir


@pytest.fixture(scope="module")
def codec(model_dir: Path) -> Codec:
    return Codec(model_dir, threads=2)


def _tone(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return x + 0.02 * rng.standard_normal(t.size)


# -- metrics ------------------------------------------------------------------------------------
@pytest.mark.parametrize("snr", [0.0, 10.0, 30.0])
def test_si_sdr_matches_known_snr(snr: float) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(RATE)
    x -= x.mean()
    n = rng.standard_normal(RATE)
    n -= n.mean()
    n -= x * (n @ x) / (x @ x)  # orthogonal to x: SI-SDR is exactly the SNR
    n *= np.sqrt((x @ x) / (n @ n) / 10 ** (snr / 10))
    assert M.si_sdr(x, x + n) == pytest.approx(snr, abs=1e-6)


def test_si_sdr_scale_invariant() -> None:
    x = _tone()
    y = x + 0.05 * np.random.default_rng(2).standard_normal(x.size)
    assert M.si_sdr(x, 0.1 * y) == pytest.approx(M.si_sdr(x, y), abs=1e-9)
    assert M.si_sdr(x, 7 * x) > 100


def test_mel_and_lsd_zero_for_identical_and_grow_with_noise() -> None:
    x = _tone()
    assert M.mel_distance(x, x) == 0.0
    assert M.lsd_mse(x, x) == 0.0
    rng = np.random.default_rng(3)
    d = [M.mel_distance(x, x + a * rng.standard_normal(x.size)) for a in (1e-3, 1e-2, 1e-1)]
    assert d[0] < d[1] < d[2]
    assert M.lsd_mse(x, 2 * x) == pytest.approx((20 * np.log10(2)) ** 2, rel=1e-6)


def test_mel_distance_matches_training_loss() -> None:
    torch = pytest.importorskip("torch")
    from flowdec.train.config import LossConfig
    from flowdec.train.losses import MelDistance

    x, y = _tone(0.5), _tone(0.5, seed=5)
    cfg = LossConfig()
    ref = MelDistance(cfg.mel_windows, cfg.mel_bands, RATE)(
        torch.from_numpy(y[None]).float(), torch.from_numpy(x[None]).float())
    assert M.mel_distance(x, y) == pytest.approx(float(ref), rel=1e-3)


def test_frechet_distance_identities() -> None:
    rng = np.random.default_rng(4)
    a = rng.standard_normal((40, 6))
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # same covariance, mean shifted by 2 in every dim: distance ≈ 4·d
    assert M.frechet_distance(a, a + 2.0) == pytest.approx(24.0, rel=1e-6)


def test_availability_reports_every_metric() -> None:
    avail = M.availability()
    assert set(avail) == set(M.ALL_METRICS)
    assert all(v.startswith(("ok", "not installed")) for v in avail.values())


def test_score_skips_speech_metrics_for_other_domains() -> None:
    x = _tone()
    out = M.score(x, x, ["si_sdr", "pesq_wb", "stoi"], speech=False)
    assert set(out) == {"si_sdr"}


@pytest.mark.skipif(not M.available("visqol"), reason="visqol: not installed")
def test_visqol_orders_degradations() -> None:
    x = _tone(1.0)
    rng = np.random.default_rng(6)
    clean = M.visqol(x, x + 1e-3 * rng.standard_normal(x.size))
    noisy = M.visqol(x, x + 1e-1 * rng.standard_normal(x.size))
    assert 1.0 <= noisy < clean <= 5.0


@pytest.mark.skipif(not M.available("pesq_wb") or not M.available("stoi"),
                    reason="pesq/pystoi: not installed")
def test_pesq_stoi_identity_is_best() -> None:
    t = np.arange(RATE) / RATE
    ph = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 3 * t)) / RATE
    x = 0.3 * sum(np.sin(k * ph) / k for k in range(1, 15)) * np.sin(2 * np.pi * 2 * t) ** 2
    noisy = x + 0.05 * np.random.default_rng(7).standard_normal(x.size)
    assert M.stoi(x, x) == pytest.approx(1.0, abs=1e-3)
    assert M.stoi(x, noisy) < M.stoi(x, x)
    assert M.pesq_wb(x, x) > M.pesq_wb(x, noisy)


@pytest.mark.slow
@pytest.mark.skipif(not M.available("fad"), reason="fad: aisfx or torch not installed")
def test_fad_zero_for_same_set_positive_otherwise() -> None:
    a = [_tone(1.0)]
    b = [x + 0.2 * np.random.default_rng(9).standard_normal(x.size) for x in a]
    assert M.fad(a, a) == pytest.approx(0.0, abs=1e-6)
    assert M.fad(a, b) > 0.0


def _example(seconds: float = 3.0) -> tuple[np.ndarray, int]:
    """The bundled example clip (stereo, 44.1 kHz), first ``seconds``, float64."""
    from pedalboard.io import AudioFile

    from flowdec.codec import example_clip

    with AudioFile(str(example_clip())) as f:
        rate = int(f.samplerate)
        return np.asarray(f.read(int(seconds * rate)), np.float64), rate


@pytest.mark.skipif(not M.available("zimtohrli"), reason="zimtohrli: not installed")
def test_zimtohrli_orders_degradations_of_real_audio() -> None:
    from scipy.signal import butter, sosfilt

    x, rate = _example()          # stereo at 44.1 kHz: downmixed and resampled to 48 kHz
    assert x.shape[0] == 2 and rate != M.RATE
    noise = np.random.default_rng(10).standard_normal(x.shape) * np.sqrt(np.mean(x**2))
    assert M.zimtohrli(x, x, rate) == pytest.approx(0.0, abs=1e-9)
    mild, strong = (M.zimtohrli(x, x + 10 ** (-snr / 20) * noise, rate) for snr in (40, 20))
    assert 0.0 < mild < strong
    low = [M.zimtohrli(x, sosfilt(butter(8, fc, fs=rate, output="sos"), x, axis=1), rate)
           for fc in (12000, 7000, 4000)]
    assert 0.0 < low[0] < low[1] < low[2]


@pytest.mark.skipif(not M.available("zimtohrli"), reason="zimtohrli: not installed")
def test_zimtohrli_pads_short_signals() -> None:
    # zimtohrli 0.2.1 aborts the process on < ~3950 samples; the metric pads them
    x = _tone(0.02)
    assert M.zimtohrli(x, x) == 0.0
    assert 0.0 < M.zimtohrli(x, 0.5 * x) < math.inf


def test_zimtohrli_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "zimtohrli" else real(name, *a))
    M._availability.cache_clear()
    try:
        assert M.availability()["zimtohrli"] == "not installed (pip install zimtohrli)"
        assert "zimtohrli" not in M.score(_tone(0.2), _tone(0.2), ["zimtohrli"], speech=False)
    finally:
        M._availability.cache_clear()


# -- paired comparisons -------------------------------------------------------------------------
def test_paired_comparison_by_hand() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 5.0, 3.0]      # b - a = 1, 0, 2, -1
    lower = paired_comparison(a, b, higher_is_better=False)
    higher = paired_comparison(a, b, higher_is_better=True)
    assert lower is not None and higher is not None
    assert (lower.n, lower.mean_diff, lower.better, lower.worse) == (4, 0.5, 1, 2)
    assert (higher.n, higher.mean_diff, higher.better, higher.worse) == (4, 0.5, 2, 1)
    assert -1.0 <= lower.ci_low < 0.5 < lower.ci_high <= 2.0
    assert (higher.ci_low, higher.ci_high) == (lower.ci_low, lower.ci_high)
    assert paired_comparison(a, b, False) == lower            # seeded: deterministic
    # two clips, differences 0 and 1: resampled means are 0, 0.5, 1 with p = 1/4, 1/2, 1/4,
    # so the 2.5 and 97.5 percentiles are exactly 0 and 1
    two = paired_comparison([0.0, 0.0], [0.0, 1.0], False)
    assert two is not None and (two.ci_low, two.ci_high, two.better, two.worse) == (
        0.0, 1.0, 0, 1)
    same = paired_comparison([1.0, 2.0, 3.0], [1.25, 2.25, 3.25], True)
    assert same is not None and same.ci_low == same.ci_high == same.mean_diff == 0.25


def test_paired_comparison_drops_missing_clips() -> None:
    r = paired_comparison([1.0, None, 3.0, math.nan], [2.0, 5.0, None, 1.0], True)
    assert r is not None and (r.n, r.mean_diff, r.better) == (1, 1.0, 1)
    assert (r.ci_low, r.ci_high) == (1.0, 1.0)
    assert paired_comparison([None], [1.0], True) is None
    with pytest.raises(ValueError):
        paired_comparison([1.0], [1.0, 2.0], True)


def test_paired_bootstrap_matches_normal_interval() -> None:
    d = np.random.default_rng(11).normal(0.3, 1.0, 400)
    r = paired_comparison(np.zeros(400).tolist(), d.tolist(), True)
    assert r is not None
    half = 1.96 * d.std(ddof=1) / np.sqrt(d.size)
    assert r.mean_diff == pytest.approx(d.mean())
    assert r.ci_low == pytest.approx(d.mean() - half, abs=0.15 * half)
    assert r.ci_high == pytest.approx(d.mean() + half, abs=0.15 * half)
    assert r.better == int(np.sum(d > 0))


def test_comparison_pairs() -> None:
    def f(b: float, nfe: int, solver: str = "midpoint", sigma: str = "band",
          envelope: bool = True, bands: int = 0) -> Setting:
        return Setting("flowdec", b, nfe, solver, sigma, envelope, bands)

    settings = [Setting("ndac", 3.0), f(3.0, 6), Setting("ndac", 6.0), f(6.0, 2), f(6.0, 6),
                f(6.0, 6, "euler"), f(6.0, 6, sigma="global"), f(6.0, 6, envelope=False),
                Setting("ndac", 6.0, level_bands=24), f(6.0, 6, bands=24),
                Setting("opus", 6.0), Setting("opus", 12.0)]
    got = [(k, a.key, b.key) for k, a, b in comparison_pairs(settings)]
    assert got == [
        ("postfilter", "ndac@3", "flowdec-nfe6@3"),
        ("postfilter", "ndac@6", "flowdec-nfe2@6"),
        ("postfilter", "ndac@6", "flowdec-nfe6@6"),
        ("postfilter", "ndac-bands24@6", "flowdec-nfe6-bands24@6"),
        ("ablation", "flowdec-nfe6@6", "flowdec-nfe6-euler@6"),
        ("ablation", "flowdec-nfe6@6", "flowdec-nfe6-global@6"),
        ("ablation", "flowdec-nfe6@6", "flowdec-nfe6-noenv@6"),
        ("band gains", "ndac@6", "ndac-bands24@6"),
        ("band gains", "flowdec-nfe6@6", "flowdec-nfe6-bands24@6"),
        ("bitrate", "ndac@3", "ndac@6"),
        ("bitrate", "flowdec-nfe6@3", "flowdec-nfe6@6"),
    ]


# -- opus ---------------------------------------------------------------------------------------
def test_estimate_delay_and_align() -> None:
    x = np.random.default_rng(8).standard_normal((1, 4000))
    late = np.concatenate([np.zeros((1, 37)), x], axis=1)
    assert estimate_delay(x, late, 100) == 37
    early = x[:, 11:]
    y, d = align(x, early, 100)
    assert d == -11 and y.shape == x.shape
    np.testing.assert_array_equal(y[:, 11:], early[:, : x.shape[1] - 11])


@pytest.mark.skipif(shutil.which("opusenc") is None, reason="opusenc not installed")
@pytest.mark.parametrize("rate", [48000, 44100])
def test_opus_roundtrip_is_aligned(rate: int) -> None:
    t = np.arange(rate) / rate
    x = (0.3 * np.sin(2 * np.pi * 330 * t) * np.sin(2 * np.pi * 2 * t)).astype(np.float32)
    r = opus_roundtrip(np.stack([x, 0.5 * x]), rate, 32.0)
    assert r.audio.shape == (2, rate)
    assert r.kbps > 20
    # aligned: after a further alignment search the residual lag is 0
    assert estimate_delay(np.stack([x, 0.5 * x]), r.audio, 200) == 0
    assert M.si_sdr(x, r.audio[0]) > 10


# -- flowdec eval end to end --------------------------------------------------------------------
def make_clips(folder: Path, seconds: float = 1.5) -> None:
    from scipy.io import wavfile

    folder.mkdir(parents=True, exist_ok=True)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    rng = np.random.default_rng(0)
    music = sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330, 440)) * (
        0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))
    ph = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 3 * t)) / RATE
    env = (0.5 + 0.5 * np.sin(8 * np.pi * t)) ** 2
    speech = sum(np.sin(k * ph) / k for k in range(1, 20)) * env
    sound = rng.standard_normal(n) * np.exp(-(t % 0.5) * 8)
    for name, x in (("music_a", music), ("speech_b", speech), ("sound_c", sound)):
        wavfile.write(folder / f"{name}.wav", RATE, (0.5 * x / np.abs(x).max()).astype(np.float32))


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    """``flowdec eval`` run once through the CLI (one bitrate, NFE 2, fast metrics and
    Zimtohrli, with and without 24 band gains)."""
    from flowdec.cli import main

    root = tmp_path_factory.mktemp("eval")
    make_clips(root / "clips")
    out = root / "out"
    baselines = ["--baselines", "opus"] if shutil.which("opusenc") else ["--baselines"]
    rc = main(["eval", str(root / "clips"), "-b", "6", "--nfe", "2", "--level-bands", "24",
               *baselines,
               "--metrics", "si_sdr", "mel_distance", "lsd_mse", "stoi", "zimtohrli",
               "-o", str(out),
               "--model", str(model_dir), "--threads", "2", "--quiet", "--no-report"])
    assert rc == 0
    return out


def test_eval_writes_csv_json_markdown(eval_dir: Path) -> None:
    with open(eval_dir / "clips.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    settings = {r["setting"] for r in rows}
    assert {"ndac", "ndac-bands24"} <= settings
    # actual kbit/s counts the side information: 8 bits per second for the level gains,
    # 96 more for 24 band gains (per started second of each clip)
    for r in rows:
        if r["setting"].startswith("ndac"):
            seconds = float(r["seconds"])
            per_block = 8 + (96 if r["setting"] == "ndac-bands24" else 0)
            side = np.ceil((np.ceil(seconds * 75) + 1) / 75) * per_block / seconds / 1000
            assert float(r["actual_kbps"]) == pytest.approx(6 + side, abs=1e-3)
    assert {r["clip"] for r in rows} == {"music_a", "speech_b", "sound_c"}
    assert {r["domain"] for r in rows} == {"music", "speech", "sound"}
    for r in rows:
        assert np.isfinite(float(r["si_sdr"])) and float(r["mel_distance"]) >= 0
        assert float(r["rtf"]) > 0
    speech = [r for r in rows if r["clip"] == "speech_b"]
    assert all(r["stoi"] != "" for r in speech)
    assert all(r["stoi"] == "" for r in rows if r["clip"] != "speech_b")
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert set(summary["metrics"]) == set(M.ALL_METRICS)
    assert summary["domains"] == ["music", "sound", "speech"]
    names = [s["name"] for s in summary["settings"]]
    assert names[0] == "ndac"
    assert "ndac-bands24" in names
    if summary["model_folder"] and any(s["system"] == "flowdec" for s in summary["settings"]):
        assert {"flowdec-nfe2", "flowdec-nfe2-bands24"} <= set(names)
    if shutil.which("opusenc"):
        assert [s["bitrate"] for s in summary["settings"] if s["system"] == "opus"] == [6, 12]
    for d in ("music", "speech", "sound", "all"):
        md = (eval_dir / f"results_{d}.md").read_text()
        assert "| setting |" in md and "| ndac | 6 |" in md


def test_eval_reports_zimtohrli_and_paired_comparisons(eval_dir: Path) -> None:
    with open(eval_dir / "clips.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((eval_dir / "summary.json").read_text())
    zim = M.available("zimtohrli")
    assert ("zimtohrli" in summary["metrics_used"]) == zim
    if zim:
        assert all(float(r["zimtohrli"]) > 0 for r in rows)   # nothing is coded losslessly
    assert summary["paired"]["metrics"] == [m for m in summary["metrics_used"] if m != "fad"]
    pairs = {(c["a"], c["b"]): c for c in summary["comparisons"]}
    assert ("ndac@6", "ndac-bands24@6") in pairs
    # the JSON's paired numbers are those of the per-clip rows in clips.csv
    c = pairs[("ndac@6", "ndac-bands24@6")]
    assert c["kind"] == "band gains"
    score = {(r["setting"], r["clip"]): r for r in rows}
    clips = sorted({r["clip"] for r in rows})
    for m in summary["paired"]["metrics"]:
        a = [float(score[("ndac", n)][m] or "nan") for n in clips]
        b = [float(score[("ndac-bands24", n)][m] or "nan") for n in clips]
        e = c["domains"]["all"][m]
        d = [y - x for x, y in zip(a, b, strict=True) if not math.isnan(x + y)]
        tol = 1e-5 * np.nanmax(np.abs(a + b))          # clips.csv keeps 6 digits
        assert e["n"] == len(d) and e["mean_diff"] == pytest.approx(np.mean(d), abs=tol)
        assert e["ci_low"] <= e["mean_diff"] + 1e-12 and e["mean_diff"] <= e["ci_high"] + 1e-12
        sign = 1 if M.HIGHER_IS_BETTER[m] else -1
        assert e["better"] == sum(sign * x > 0 for x in d)
        assert e["worse"] == sum(sign * x < 0 for x in d)
    assert set(c["domains"]) == {"music", "speech", "sound", "all"}
    assert "stoi" not in c["domains"]["music"] and c["domains"]["speech"]["stoi"]["n"] == 1
    for d in ("music", "speech", "sound", "all"):
        md = (eval_dir / f"results_{d}.md").read_text()
        assert "## Paired per-clip comparisons" in md
        assert "| ndac-bands24@6 vs ndac@6 | band gains |" in md
        if zim:
            assert "zimtohrli ↓" in md


def test_eval_refuses_missing_folder(tmp_path: Path, model_dir: Path) -> None:
    from flowdec.cli import main

    assert main(["eval", str(tmp_path / "nope"), "--model", str(model_dir), "--quiet",
                 "--no-report", "-o", str(tmp_path / "o")]) == 1


def test_ablation_settings(codec: Codec) -> None:
    from flowdec.evaluation.runner import EvalConfig, settings_for

    names = [s.name for s in settings_for(codec, EvalConfig(bitrates=(6.0,), nfes=(6,),
                                                             baselines=(), ablations=True))]
    if not codec.has_postfilter:
        assert names == ["ndac"]
        return
    assert names[:2] == ["ndac", "flowdec-nfe6"]
    assert {"flowdec-nfe6-euler", "flowdec-nfe6-global"} <= set(names)
    envelope = codec.post_card is not None and codec.post_card.envelope is not None
    assert ("flowdec-nfe6-noenv" in names) == envelope


def test_rate_curves_plot_the_actual_bitrate() -> None:
    """Opus asked for "3" kbit/s ran at 4.84: the curves plotted it at 3."""
    from flowdec.evaluation.report import rate_points

    def setting(name: str, kbps: float, actual: float, mel: float) -> dict[str, object]:
        return {"name": name, "bitrate": kbps,
                "domains": {"all": {"clips": 2, "mel_distance": mel, "actual_kbps": actual}}}

    summary = {"settings": [setting("opus", 6.0, 9.0, 0.8), setting("opus", 3.0, 4.84, 1.0),
                            setting("ndac", 6.0, 6.1, 0.9)]}
    assert rate_points(summary, "mel_distance", "all") == {
        "opus": [(4.84, 1.0), (9.0, 0.8)], "ndac": [(6.1, 0.9)]}


def test_eval_of_one_domain_named_by_option(tmp_path: Path, model_dir: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Clips not named music_/speech_/sound_ got no PESQ/STOI (undocumented; --domain names
    their domain); one domain wrote the same table twice (results_<d>.md and results_all.md,
    twice in the report); "fad: not installed" was printed when FAD was not asked for;
    "ndac" was not explained."""
    from flowdec.cli import main
    from flowdec.evaluation.report import write_report

    make_clips(tmp_path / "made")
    clips = tmp_path / "clips"
    clips.mkdir()
    for made, name in (("speech_b", "take1"), ("music_a", "take2")):
        (tmp_path / "made" / f"{made}.wav").rename(clips / f"{name}.wav")
    real = M.availability
    monkeypatch.setattr(M, "availability", lambda: {**real(), "fad": "not installed (test)"})
    common = ["-b", "6", "--nfe", "--baselines", "--metrics", "si_sdr", "stoi", "--model",
              str(model_dir), "--threads", "2", "--no-report"]

    assert main(["eval", str(clips), "-o", str(tmp_path / "other"), *common]) == 0
    out = capsys.readouterr().out
    assert "fad" not in out
    assert "pass --domain speech" in out and "ndac: the codec alone" in out
    assert json.loads((tmp_path / "other" / "summary.json").read_text())["domains"] == ["other"]

    o = tmp_path / "speech"
    assert main(["eval", str(clips), "-o", str(o), "--domain", "speech", *common]) == 0
    assert "--domain" not in capsys.readouterr().out
    summary = json.loads((o / "summary.json").read_text())
    assert summary["domains"] == ["speech"]
    with open(o / "clips.csv", newline="") as f:
        assert all(r["stoi"] != "" for r in csv.DictReader(f))
    assert sorted(p.name for p in o.glob("results_*.md")) == ["results_all.md"]
    md = (o / "results_all.md").read_text()
    assert md.startswith("# all (speech):") and "ndac: the codec alone" in md
    assert "Missing metrics" not in md
    page = write_report(o).read_text()
    assert page.count("<h3>all</h3>") == 1 and "<h3>speech</h3>" not in page
    assert "ndac: the codec alone" in page
