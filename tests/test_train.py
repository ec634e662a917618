"""Training end to end on generated audio: codec and postfilter train, resume, export to
ONNX, and the exported files run in onnxruntime with the same numbers as torch.

Small networks and few steps so this stays fast; DDP is exercised with two CPU processes
on the gloo backend.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from flowdec.codec import Codec, example_clip  # noqa: E402
from flowdec.train.loop import lr_at  # noqa: E402

SMALL = ["--dim", "32", "--enc-blocks", "2", "--dec-blocks", "2", "--batch", "2",
         "--crop", "0.4", "--threads", "1", "--validate-every", "2"]


def run_module(module: str, *args: str, nproc: int = 1) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--master_port=29533", "-m", module, *args]
    else:
        cmd = [sys.executable, "-m", module, *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def codec_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("codec_run")
    run_module("flowdec.train.train_codec", "--synthetic", "--run-dir", str(run), "--steps", "3",
               *SMALL)
    return run


def test_codec_trains_logs_and_resumes(codec_run: Path) -> None:
    state = torch.load(codec_run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 3
    assert {"model", "ema", "optimizer", "rng", "config"} <= set(state)
    with open(codec_run / "valid.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(np.isfinite(float(v)) for k, v in rows[0].items() if "mel" in k)
    res = run_module("flowdec.train.train_codec", "--synthetic", "--run-dir", str(codec_run),
                     "--steps", "2", "--complex-windows", "256", *SMALL)
    state = torch.load(codec_run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 5  # resumed, not restarted
    # a resumed run keeps its loss, and says so when asked to change it
    assert "--complex-windows: ignored, a resumed run keeps the loss" in res.stdout
    assert not state["config"]["loss"]["complex_windows"]


def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    run_module("flowdec.train.train_codec", "--synthetic", "--run-dir", str(tmp_path / "ddp"),
               "--steps", "2", *SMALL, nproc=2)
    state = torch.load(tmp_path / "ddp" / "checkpoint.pt", map_location="cpu",
                       weights_only=False)
    assert state["step"] == 2


@pytest.fixture(scope="module")
def exported(codec_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    run_module("flowdec.train.export", "codec", "--run", str(codec_run), "--out", str(out))
    sigma = out.parent / "sigma.json"
    cache = codec_run / "synthetic_cache"
    run_module("flowdec.train.sigma", "--codec-run", str(codec_run), "--cache", str(cache),
               "--pairs", "8", "--out", str(sigma))
    pf_run = out.parent / "pf_run"
    run_module("flowdec.train.train_postfilter", "--codec-run", str(codec_run), "--cache",
               str(cache), "--sigma", str(sigma), "--run-dir", str(pf_run), "--steps", "2",
               "--batch", "2", "--channels", "16", "--threads", "1", "--validate-every", "2")
    run_module("flowdec.train.export", "postfilter", "--run", str(pf_run), "--out", str(out))
    return out


def test_sigma_and_beta_are_sane(exported: Path) -> None:
    card = json.loads((exported / "model_card.json").read_text())["postfilter"]
    sigma = np.array(card["sigma_y"])
    assert sigma.shape == (769,) and (sigma > 0).all() and np.isfinite(sigma).all()
    assert card["sigma_y_global"] > 0 and 0 < card["beta"] < 10


def test_onnx_matches_torch_on_real_audio(codec_run: Path, exported: Path) -> None:
    from pedalboard.io import AudioFile

    from flowdec.audio import resample
    from flowdec.train.codec_model import ExportDecoder, ExportEncoder, load_codec

    with AudioFile(str(example_clip())) as f:
        audio = f.read(f.frames)
        sr = f.samplerate
    x = resample(audio.mean(0, keepdims=True), sr, 48000)[:, : 640 * 150]
    model, _, _ = load_codec(codec_run, float16=True)  # the files store float16 weights
    with torch.no_grad():
        codes_t = ExportEncoder(model)(torch.from_numpy(x)).numpy()
        y_t = ExportDecoder(model)(torch.from_numpy(codes_t[:, :6])).numpy()
    enc = ort.InferenceSession(str(exported / "encoder.onnx"))
    dec = ort.InferenceSession(str(exported / "decoder.onnx"))
    codes_o = enc.run(None, {"audio": x})[0]
    # argmax near-ties may flip under different float summation orders (then the residual
    # of later levels differs too), so require near-total agreement, not identity
    assert (codes_o[:, 0] == codes_t[:, 0]).mean() >= 0.99
    assert (codes_o == codes_t).mean() >= 0.98
    y_o = dec.run(None, {"codes": codes_t[:, :6]})[0]
    assert np.abs(y_o - y_t).max() <= 1e-4 * max(1.0, float(np.abs(y_t).max()))


def test_runtime_loads_exported_model(exported: Path) -> None:
    codec = Codec(exported, threads=1)
    assert codec.has_postfilter and codec.bitrates == [3.0, 4.5, 6.0, 7.5]
    x = np.random.default_rng(0).standard_normal((1, 24000)).astype(np.float32) * 0.1
    y = codec.roundtrip(x, 48000, bitrate=3.0, nfe=2, seed=1)
    assert y.shape == x.shape and np.isfinite(y).all()


def test_warm_start_from_committed_weights(codec_run: Path, tmp_path: Path) -> None:
    """A weights-only float16 file (what git keeps) starts a new run where the old one was."""
    weights = tmp_path / "codec.pt"
    run_module("flowdec.train.export", "weights", "--run", str(codec_run), "--out", str(weights))
    old = torch.load(codec_run / "checkpoint.pt", map_location="cpu", weights_only=False)
    new_run = tmp_path / "warm"
    run_module("flowdec.train.train_codec", "--synthetic", "--run-dir", str(new_run), "--init",
               str(weights), "--steps", "1", "--total-steps", "40", "--lr-min", "1e-5",
               "--complex-windows", "256", "512", "--complex-weight", "0.5", *SMALL)
    new = torch.load(new_run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert new["step"] == old["step"] + 1
    assert new["config"]["model"] == old["config"]["model"]
    # a warm start may change the loss: the complex-spectrum term is configured and logged
    assert list(new["config"]["loss"]["complex_windows"]) == [256, 512]
    assert new["config"]["loss"]["complex_weight"] == 0.5
    # the schedule options reach the run: the step ran at the shorter cosine's rate
    t = new["config"]["train"]
    assert (t["total_steps"], t["lr_min"]) == (40, 1e-5)
    expected = lr_at(old["step"], t["lr"], 1e-5, t["warmup_steps"], 40)
    assert new["optimizer"]["param_groups"][0]["lr"] == pytest.approx(expected)


def test_warm_start_can_add_blocks_that_start_as_the_identity(codec_run: Path,
                                                              tmp_path: Path) -> None:
    """``--init`` with more decoder blocks than the weights have: the run's model has them,
    and before its first step it computes exactly what the weights' model does (the added
    blocks' residual gains start at zero). Fewer blocks or another width are refused."""
    from flowdec.train.codec_model import Codec, load_codec
    from flowdec.train.config import CodecRun
    from flowdec.train.loop import Dist, Trainer

    weights = tmp_path / "codec.pt"
    run_module("flowdec.train.export", "weights", "--run", str(codec_run), "--out", str(weights))
    old, cfg, _ = load_codec(weights)
    grown = CodecRun.from_dict(cfg.to_dict())
    grown.model.dec_blocks = cfg.model.dec_blocks + 2
    trainer = Trainer(tmp_path / "grown", Codec(grown.model), grown.to_dict(),
                      Dist(0, 1, 0, torch.device("cpu")), 1e-3, 1e-5, 1, 10,
                      init_weights=weights)
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 9600)).astype(np.float32))
    with torch.no_grad():
        want = old(x)["audio"]
        got = trainer.model.eval()(x)["audio"]
        got_ema = trainer.ema.model(x)["audio"]
    assert len(trainer.model.decoder.blocks) == cfg.model.dec_blocks + 2
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(got_ema, want, rtol=0, atol=0)

    run = tmp_path / "grown_run"
    run_module("flowdec.train.train_codec", "--synthetic", "--run-dir", str(run), "--init",
               str(weights), "--steps", "1", *SMALL[:4], "--dec-blocks", "3", *SMALL[6:])
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["config"]["model"]["dec_blocks"] == 3
    assert "decoder.blocks.2.scale" in state["model"]
    for bad, says in ((["--dec-blocks", "1"], "can add blocks, not remove them"),
                      (["--dim", "48"], "keeps the width")):
        res = subprocess.run([sys.executable, "-m", "flowdec.train.train_codec", "--synthetic",
                              "--run-dir", str(tmp_path / "refused"), "--init", str(weights),
                              "--steps", "1", *bad], capture_output=True, text=True)
        assert res.returncode != 0 and says in res.stderr, res.stderr
        assert not (tmp_path / "refused" / "checkpoint.pt").exists()


def test_complex_spectral_distance_matches_numpy() -> None:
    """The compressed complex-STFT loss against a plain numpy STFT (Hann, hop n/4, centred
    with reflection): |X|^0.3 with the phase kept, mean complex distance, mean over windows.
    A copy delayed by a fraction of a window moves only the phases and is penalised."""
    from flowdec.train.losses import ComplexSpectralDistance

    def compressed(x: np.ndarray, n: int) -> np.ndarray:
        xp = np.pad(x, n // 2, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(xp, n)[:: n // 4]
        w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
        spec = np.fft.rfft(frames * w, axis=-1)
        return spec * (np.abs(spec) ** 2 + 1e-10) ** ((0.3 - 1.0) / 2)

    rng = np.random.default_rng(5)
    t = np.arange(9600) / 48000
    x = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size))
    y = np.roll(x, 37) * 0.8
    windows = (256, 1024)
    want = np.mean([np.abs(compressed(y, n) - compressed(x, n)).mean() for n in windows])
    loss = ComplexSpectralDistance(windows)
    got = float(loss(torch.from_numpy(y[None]), torch.from_numpy(x[None])))
    assert got == pytest.approx(want, rel=1e-6)
    xt = torch.from_numpy(x[None])
    assert float(loss(xt, xt)) == 0.0
    delayed = torch.from_numpy(np.roll(x, 37)[None])
    assert float(loss(delayed, xt)) > 0.2 * float(loss(torch.zeros_like(xt), xt))

    # in the codec's loss: weighted in, and logged as a part
    from flowdec.train.config import LossConfig
    from flowdec.train.losses import CodecLoss

    zero = torch.zeros(())
    cfg = LossConfig(complex_windows=windows, complex_weight=0.0)
    base, _ = CodecLoss(cfg, 48000)(delayed.float(), xt.float(), zero, zero)
    cfg.complex_weight = 2.0
    total, parts = CodecLoss(cfg, 48000)(delayed.float(), xt.float(), zero, zero)
    assert parts["complex"] == pytest.approx(float(loss(delayed, xt)), rel=1e-4)
    assert float(total - base) == pytest.approx(2.0 * parts["complex"], rel=1e-4)


def test_codec_loads_from_a_weights_file(codec_run: Path, tmp_path: Path) -> None:
    """A float16 weights file stands in for the run folder (what a GPU machine gets): the
    model holds the run's EMA weights rounded to float16, in float32 parameters."""
    from flowdec.train.codec_model import load_codec

    weights = tmp_path / "codec.pt"
    run_module("flowdec.train.export", "weights", "--run", str(codec_run), "--out", str(weights))
    run, run_cfg, run_info = load_codec(codec_run)
    file, file_cfg, file_info = load_codec(weights)
    assert file_cfg == run_cfg and file_info["steps"] == run_info["steps"]
    assert all(p.dtype == torch.float32 for p in file.parameters())
    ema = run.state_dict()
    for name, value in file.state_dict().items():
        want = ema[name].half().to(ema[name].dtype) if ema[name].is_floating_point() else ema[name]
        assert torch.equal(value, want), name


def test_gpu_training_script_runs_on_a_cpu_shard(codec_run: Path, tmp_path: Path) -> None:
    """scripts/gpu_train_postfilter.sh, what a lent GPU machine runs, with DEVICE=cpu on a
    shard of the synthetic cache: it warm-starts from the committed weights, probes its pace,
    trains on and leaves weights and logs in $OUT. The second run's steps are given (STEPS),
    so nothing depends on this machine's pace; the pace arithmetic is tested below."""
    from flowdec.train.data import AudioCache
    from flowdec.train.shard import write_shard

    root = Path(__file__).resolve().parents[1]
    gpu = tmp_path / "gpu"
    write_shard(AudioCache(codec_run / "synthetic_cache"), gpu / "shard", megabytes=1.0,
                crop_seconds=2.0, valid_crops=4)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", DEVICE="cpu", TRAIN_SECONDS="24",
               PROBE_STEPS="2", STEPS="3", BATCH="2", GPU_DIR=str(gpu), OUT=str(out))
    res = subprocess.run(["bash", "scripts/gpu_train_postfilter.sh"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    start = torch.load(root / "weights" / "postfilter.pt", weights_only=False)["step"]
    saved = torch.load(out / "postfilter.pt", weights_only=False)
    assert saved["step"] == start + 2 + 3
    assert saved["config"]["net"] == torch.load(root / "weights" / "postfilter.pt",
                                                weights_only=False)["config"]["net"]
    assert re.search(r"probe: 2 steps in \d+ s with start-up, [\d.]+ steps/s; 3 more steps",
                     (out / "train.log").read_text())
    with open(out / "valid.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(np.isfinite(float(v)) for v in rows[-1].values())


def test_pace_plans_the_rest_of_the_budget(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The training script's probe arithmetic, with made-up times: the pace from the probe's
    log (start-up excluded), else from its wall time; the time left is the budget less twice
    the probe; no step left is an error (exit status 3); given steps have no time limit."""
    from flowdec.train.pace import NoTimeLeft, main, plan

    rows = [{"step": 125, "wall_s": 10.0}, {"step": 150, "wall_s": 12.5},
            {"step": 200, "wall_s": 17.5}]
    p = plan(420, 60, 100, rows)
    assert (p.rate, p.left_s, p.steps) == (10.0, 300.0, 3000)
    assert p.max_minutes == pytest.approx(5.5)
    p = plan(420, 60, 100, rows[:1])  # fewer than two rows: the probe's wall time
    assert (p.rate, p.steps) == (100 / 60, 500)
    assert plan(420, 0, 100, []).rate == 100.0  # no division by a zero-second probe
    with pytest.raises(NoTimeLeft, match="no time left after the probe"):
        plan(24, 13, 2, [])
    p = plan(24, 13, 2, [], steps=3)
    assert (p.steps, p.max_minutes) == (3, None)

    log = tmp_path / "train.csv"
    log.write_text("step,wall_s,lr,kind\n25,2.0,0.001,train\n50,4.5,0.001,train\n")
    args = ["--probe-steps", "50", "--log", str(log), "--train-seconds", "100"]
    assert main([*args, "--probe-seconds", "10"]) == 0
    assert capsys.readouterr().out.split() == ["800", "80", "10.000", "1.833"]
    assert main([*args, "--probe-seconds", "50"]) == 3
    assert "no time left" in capsys.readouterr().err
    assert main([*args, "--probe-seconds", "50", "--steps", "3"]) == 0
    assert capsys.readouterr().out.split() == ["3", "0", "10.000", "-"]


def test_prefetch_keeps_the_order_and_hands_on_errors() -> None:
    """Batches cut in a background thread come in the order a plain loop makes them; an
    error in the maker is raised by the consumer's next call (and every later one)."""
    from flowdec.train.loop import Prefetch

    def maker(seed: int, fail_at: int | None = None) -> Callable[[], np.ndarray]:
        rng = np.random.default_rng(seed)
        count = iter(range(10**6))

        def make() -> np.ndarray:
            if next(count) == fail_at:
                raise RuntimeError("cache went away")
            return rng.standard_normal(3)

        return make

    plain = maker(7)
    want = [plain() for _ in range(20)]
    got = Prefetch(maker(7), depth=3)
    for w in want:
        np.testing.assert_array_equal(next(got), w)
    failing = Prefetch(maker(7, fail_at=2), depth=3)
    next(failing), next(failing)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="cache went away"):
            next(failing)


def test_postfilter_trains_from_a_pair_cache(codec_run: Path, exported: Path,
                                             tmp_path: Path) -> None:
    """Cached (x, codec(x)) pairs feed training; a cache from another codec step is refused."""
    cache = codec_run / "synthetic_cache"
    pairs = tmp_path / "pairs"
    run_module("flowdec.train.pairs", "--codec-run", str(codec_run), "--cache", str(cache),
               "--out", str(pairs), "--pairs", "6", "--seconds", "1.0", "--threads", "1")
    meta = json.loads((pairs / "meta.json").read_text())
    x = np.load(pairs / "x.npy")
    y = np.load(pairs / "y.npy")
    assert x.shape == y.shape == (6, 48000) and len(meta["domains"]) == 6
    assert np.isfinite(y.astype(np.float32)).all() and np.abs(y).max() > 0
    assert not np.array_equal(x, y)  # y is the codec's output, not a copy
    assert set(meta["codebooks"]) <= {4, 6, 8, 10}
    sigma = exported.parent / "sigma.json"
    args = ["--codec-run", str(codec_run), "--cache", str(cache), "--sigma", str(sigma),
            "--pairs", str(pairs), "--steps", "2", "--batch", "2", "--channels", "16",
            "--threads", "1", "--validate-every", "100"]
    run_module("flowdec.train.train_postfilter", *args, "--run-dir", str(tmp_path / "pf"))
    state = torch.load(tmp_path / "pf" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 2
    meta["codec_step"] += 1
    (pairs / "meta.json").write_text(json.dumps(meta))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "flowdec.train.train_postfilter", *args,
                          "--run-dir", str(tmp_path / "pf2")], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode != 0 and "rebuild it with flowdec.train.pairs" in res.stderr


def test_postfilter_fine_tune_takes_the_new_codecs_sigma(codec_run: Path, exported: Path,
                                                        tmp_path: Path) -> None:
    """A postfilter warm-started for a new codec takes σ_y(f) re-estimated on that codec's
    pairs at the network's β (``sigma --beta``); σ_y from another β is refused. A regression
    warm start (``--regression-steps``) counts from the weights' step; the envelope target is
    kept in the run's config."""
    cache = codec_run / "synthetic_cache"
    weights = tmp_path / "pf.pt"
    run_module("flowdec.train.export", "weights", "--run", str(exported.parent / "pf_run"),
               "--out", str(weights))
    beta = torch.load(weights, weights_only=False)["config"]["net"]["beta"]
    sigma = tmp_path / "sigma.json"
    run_module("flowdec.train.sigma", "--codec-run", str(codec_run), "--cache", str(cache),
               "--pairs", "8", "--beta", repr(beta), "--out", str(sigma))
    est = json.loads(sigma.read_text())
    assert est["beta"] == beta and est["beta_measured"] > 0
    est["sigma_y"] = [0.123] * len(est["sigma_y"])  # recognisable
    sigma.write_text(json.dumps(est))
    args = ["--codec-run", str(codec_run), "--cache", str(cache), "--init", str(weights),
            "--steps", "1", "--batch", "2", "--threads", "1", "--validate-every", "100"]
    run_module("flowdec.train.train_postfilter", *args, "--sigma", str(sigma), "--run-dir",
               str(tmp_path / "pf"), "--regression-steps", "3", "--codec-envelope-target")
    state = torch.load(tmp_path / "pf" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["config"]["sigma"]["sigma_y"] == est["sigma_y"]
    # the regression warm start counts from the warm-start weights' step, not from 0
    start = torch.load(weights, weights_only=False)["step"]
    assert state["config"]["train"]["regression_until"] == start + 3
    assert state["config"]["train"]["codec_envelope_target"] is True
    est["beta"] = beta * 1.5
    sigma.write_text(json.dumps(est))
    res = subprocess.run([sys.executable, "-m", "flowdec.train.train_postfilter", *args,
                          "--sigma", str(sigma), "--run-dir", str(tmp_path / "pf2")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode != 0 and "--beta" in res.stderr


def test_band_envelope_target_matches_the_numpy_envelope_stage() -> None:
    """The training target of ``--codec-envelope-target`` is what the runtime's envelope stage
    computes (numpy reference), silent frames and clamped gains included."""
    from flowdec.dsp.envelope import band_edges, match_envelope
    from flowdec.train.postfilter_model import ENVELOPE
    from flowdec.train.train_postfilter import BandEnvelope

    n_fft, alpha = 1536, 0.3
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((2, 2, n_fft // 2 + 1, 12)) * 0.1).astype(np.float32)
    Y = (rng.standard_normal(X.shape) * 0.3).astype(np.float32)
    X[..., :3] *= 1e-4  # gains beyond the clamp
    Y[..., 5] = 0.0  # silent frames
    got = BandEnvelope(n_fft, 48000, alpha).match(torch.from_numpy(X), torch.from_numpy(Y))
    want = match_envelope(X, Y, band_edges(n_fft, 48000, int(ENVELOPE["bands"])), alpha,
                          float(ENVELOPE["max_gain_db"]))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(want, X)


def test_warm_start_keeps_new_layers_and_refuses_foreign_ones(tmp_path: Path) -> None:
    """A postfilter file from before a layer was added still warm-starts the new network."""
    from flowdec.train.loop import Trainer, init_distributed
    from flowdec.train.postfilter_model import PostfilterConfig, PostfilterNet

    cfg = PostfilterConfig(channels=8, blocks=1)
    old = PostfilterNet(cfg)
    state = {k: v.half() for k, v in old.state_dict().items() if not k.startswith("band_gain")}
    path = tmp_path / "old.pt"
    torch.save({"state": state, "step": 7, "wall_s": 1.0, "config": {}}, path)
    net = PostfilterNet(cfg)
    d = init_distributed("cpu")
    tr = Trainer(tmp_path / "run", net, {}, d, 1e-3, 1e-4, 1, 10, init_weights=path)
    assert tr.step == 7
    assert torch.equal(net.inp.weight, old.inp.weight.half().float())
    assert torch.count_nonzero(net.band_gain.weight) == 0
    state["foreign.weight"] = torch.zeros(3)
    torch.save({"state": state, "step": 7, "wall_s": 1.0, "config": {}}, path)
    with pytest.raises(ValueError, match="foreign.weight"):
        Trainer(tmp_path / "run2", PostfilterNet(cfg), {}, d, 1e-3, 1e-4, 1, 10,
                init_weights=path)


def test_postfilter_recommendation_from_an_evaluation(tmp_path: Path) -> None:
    """The card recommends the postfilter only if NFE 6 beats the codec on ViSQOL and FAD at
    every bitrate in every domain."""
    from flowdec.train.export import add_evaluation

    def setting(name: str, b: float, visqol: float, fad: float) -> dict[str, object]:
        dom = {"visqol": visqol, "fad": fad, "mel_distance": 0.3}
        return {"name": name, "system": name.split("-")[0], "bitrate": b,
                "domains": {"music": dom, "speech": dict(dom)}}

    card = {"model_id": "x", "codec": {}, "postfilter": {"beta": 0.3}}
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    good = [setting("ndac", 6.0, 3.0, 100.0), setting("flowdec-nfe6", 6.0, 3.2, 80.0),
            setting("ndac", 3.0, 2.8, 120.0), setting("flowdec-nfe6", 3.0, 3.0, 90.0)]
    for settings, expected in ((good, True),
                               (good[:3] + [setting("flowdec-nfe6", 3.0, 3.0, 130.0)], False)):
        (tmp_path / "summary.json").write_text(json.dumps({"settings": settings}))
        add_evaluation(tmp_path, tmp_path / "summary.json", "flowdec eval ...")
        post = json.loads((tmp_path / "model_card.json").read_text())["postfilter"]
        assert post["recommended"] is expected
        assert len(post["recommendation"]["checks"]) == 8  # 2 rates x 2 domains x 2 metrics


def test_validation_clips_are_distinct(tmp_path: Path) -> None:
    """A file shorter than the crop always gives the same crop: valclips must not write it
    twice, and says so clearly when a split cannot give enough distinct clips."""
    from flowdec.train.data import AudioCache
    from flowdec.train.valclips import write_clips

    rng = np.random.default_rng(0)
    short = [(0.1 * rng.standard_normal(24000), "speech", "valid") for _ in range(3)]
    long = [(0.1 * rng.standard_normal(96000), "music", "valid")]
    cache = AudioCache.from_arrays(short + long, tmp_path / "cache")
    paths = write_clips(cache, tmp_path / "clips", per_domain=3, seconds=1.0, seed=0)
    assert len(paths) == 6
    for domain in ("music", "speech"):
        data = {p.read_bytes() for p in paths if p.name.startswith(domain)}
        assert len(data) == 3, domain
    with pytest.raises(ValueError, match="speech validation split gave only 3 distinct"):
        write_clips(cache, tmp_path / "more", per_domain=4, seconds=1.0, seed=0)


def test_streaming_decoder_is_exported_and_reads_the_decoders_weights(
        codec_run: Path, exported: Path, tmp_path: Path) -> None:
    """``export codec`` also writes decoder_stream.onnx, whose weights are references into
    decoder.onnx (no copy); the runtime uses it and it decodes like the plain decoder. A
    folder whose plain files do not match the card's model id is refused, and ``export
    stream`` refuses a run that is not the folder's model."""
    import shutil

    import onnx

    from flowdec.model.files import ModelError
    from flowdec.pipeline.stages import DecoderStage

    m = onnx.load(str(exported / "decoder_stream.onnx"), load_external_data=False)
    assert m.graph.initializer
    for t in m.graph.initializer:
        assert t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data
        assert {e.key: e.value for e in t.external_data}["location"] == "decoder.onnx"
    codec = Codec(exported, threads=1)
    assert codec.decoder_stream is not None
    codes = np.random.default_rng(1).integers(0, 1024, (1, 6, 40))
    stage = codec.decoder_stage(1, 6, 3)
    y = np.concatenate([stage.push(codes[:, :, i : i + 7]) for i in range(0, 40, 7)]
                       + [stage.finish()], axis=1)
    ref = DecoderStage(codec.decoder, codec.card, 1, 6, 40)
    y_ref = np.concatenate([ref.push(codes), ref.finish()], axis=1)
    np.testing.assert_allclose(y, y_ref, atol=1e-5 * max(1.0, float(np.abs(y_ref).max())))

    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    with open(bad / "decoder.onnx", "ab") as f:  # another file in the decoder's place
        f.write(b"\0")
    with pytest.raises(ModelError, match="decoder.onnx is not the file the card names"):
        Codec(bad)
    shutil.copy(exported / "decoder.onnx", bad / "decoder.onnx")
    card = json.loads((bad / "model_card.json").read_text())
    card["model_id"] = "0" * 16
    (bad / "model_card.json").write_text(json.dumps(card))
    res = subprocess.run([sys.executable, "-m", "flowdec.train.export", "stream", "--run",
                          str(codec_run), "--out", str(bad)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and f"is model {'0' * 16}" in res.stderr
    assert not (bad / "decoder_stream.part.onnx").exists()


def test_exported_files_store_float16_weights_and_no_dft_tables(exported: Path) -> None:
    """The files stay small: every float weight is stored as float16 (cast to float32 when a
    session starts) and the DFT tables are nodes, not megabytes of constants."""
    import onnx

    for name in ("encoder.onnx", "decoder.onnx"):
        m = onnx.load(str(exported / name))
        floats = [t for t in m.graph.initializer
                  if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
        assert floats and all(t.data_type == onnx.TensorProto.FLOAT16 for t in floats), name
        big = [n.output[0] for n in m.graph.node if n.op_type == "Constant"
               and any(len(a.t.raw_data) > 1 << 16 for a in n.attribute if a.HasField("t"))]
        assert not big, (name, big)


def test_release_refuses_files_of_the_model_it_replaces(codec_run: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``export release`` writes a checked model folder whose card names its flowdec version;
    a later release (a new version) remembers the model it replaced, and a file encoded with
    that model is refused with one line naming it, its flowdec version and --model."""
    import shutil

    from pedalboard.io import AudioFile

    import flowdec
    from flowdec.train.export import release

    folder = tmp_path / "models" / "m"
    monkeypatch.setattr(flowdec, "__version__", "9.0.0")
    release(codec_run, folder)
    first = json.loads((folder / "model_card.json").read_text())
    assert first["flowdec_version"] == "9.0.0" and first["previous_models"] == []
    assert set(first["files"]) == {"encoder.onnx", "decoder.onnx", "decoder_stream.onnx",
                                   "encoder_stream.onnx"}
    old_model = tmp_path / "old"
    shutil.copytree(folder, old_model)
    clip = tmp_path / "x.wav"
    x = np.random.default_rng(0).standard_normal((1, 24000)).astype(np.float32) * 0.1
    with AudioFile(str(clip), "w", 48000, 1) as f:
        f.write(x)
    fdc = tmp_path / "x.fdc"
    cli = [sys.executable, "-m", "flowdec"]
    subprocess.run([*cli, "encode", str(clip), str(fdc), "-b", "3", "--model", str(folder)],
                   check=True, capture_output=True, timeout=300)

    run2 = tmp_path / "run2"  # other weights, same architecture
    run_module("flowdec.train.train_codec", "--synthetic", "--run-dir", str(run2), "--steps", "2",
               *SMALL)
    with pytest.raises(SystemExit, match="already shipped model"):  # same version twice
        release(run2, folder)
    assert json.loads((folder / "model_card.json").read_text()) == first  # unchanged

    monkeypatch.setattr(flowdec, "__version__", "9.1.0")
    release(run2, folder)
    second = json.loads((folder / "model_card.json").read_text())
    assert second["model_id"] != first["model_id"] and second["flowdec_version"] == "9.1.0"
    assert second["previous_models"][0]["model_id"] == first["model_id"]
    assert second["previous_models"][0]["flowdec_version"] == "9.0.0"
    assert not list(folder.parent.glob(".m.*"))  # no staging folder left behind

    res = subprocess.run([*cli, "decode", str(fdc), str(tmp_path / "y.wav"), "--model",
                          str(folder)], capture_output=True, text=True, timeout=300)
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1, res.stderr
    assert first["model_id"] in lines[0] and "flowdec 9.0.0" in lines[0]
    assert "--model" in lines[0] and not (tmp_path / "y.wav").exists()
    subprocess.run([*cli, "decode", str(fdc), str(tmp_path / "y.wav"), "--model",
                    str(old_model)], check=True, capture_output=True, timeout=300)


def _schema(value: object) -> object:
    """A card's shape: its keys, nested (lists by their first item), not its values."""
    if isinstance(value, dict):
        return {k: _schema(v) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [_schema(value[0])]
    return type(value).__name__ if value is not None else None


def test_tiny_model_has_the_shipped_models_graphs_and_card(tiny_model_dir: Path,
                                                           model_dir: Path) -> None:
    """The fixture's random model (``export random``): the shipped model's files, graph inputs
    and outputs, card keys and codec settings; it loads and round-trips with the postfilter."""
    import flowdec

    tiny = json.loads((tiny_model_dir / "model_card.json").read_text())
    shipped = json.loads((model_dir / "model_card.json").read_text())
    assert set(tiny["files"]) == set(shipped["files"])
    for name in tiny["files"]:
        a = ort.InferenceSession(str(tiny_model_dir / name))
        b = ort.InferenceSession(str(model_dir / name))
        for got, want in ((a.get_inputs(), b.get_inputs()), (a.get_outputs(), b.get_outputs())):
            assert [(i.name, i.type, len(i.shape)) for i in got] == \
                [(i.name, i.type, len(i.shape)) for i in want], name
    for section in ("codec", "postfilter"):
        keys = set(shipped[section]) - {"recommendation"}  # set by an evaluation
        assert set(tiny[section]) == keys, section
    assert set(tiny) == set(shipped) - {"evaluation"}
    same = ("sample_rate", "hop", "window", "codebooks", "bitrates_kbps", "lookahead_frames")
    assert {k: tiny["codec"][k] for k in same} == {k: shipped["codec"][k] for k in same}
    # the architecture's settings match; the training settings a release was made with may
    # lack options added to training since (they default to off)
    assert _schema(tiny["codec"]["config"]["model"]) == _schema(shipped["codec"]["config"]["model"])
    for part in ("loss", "train"):
        shipped_part = _schema(shipped["codec"]["config"][part])
        tiny_part = _schema(tiny["codec"]["config"][part])
        assert isinstance(shipped_part, dict) and isinstance(tiny_part, dict)
        assert shipped_part.items() <= tiny_part.items(), part
    assert tiny["codec"]["parameters"]["decoder"] < shipped["codec"]["parameters"]["decoder"] / 50
    codec = flowdec.Codec(model=tiny_model_dir, threads=1)
    x = np.random.default_rng(1).standard_normal((2, 30000)).astype(np.float32) * 0.1
    for postfilter in (False, True):
        y = codec.roundtrip(x, 44100, bitrate=3.0, postfilter=postfilter,
                            nfe=2 if postfilter else None)
        assert y.shape == x.shape and np.isfinite(y).all() and np.abs(y).max() > 0
