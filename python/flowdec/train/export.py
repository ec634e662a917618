"""ONNX export of the codec (encoder: audio → codes; decoder: codes → audio) and model cards.

    python -m flowdec.train.export release --run runs/codec --postfilter-run runs/postfilter \
        --out python/flowdec/models/flowdec-75
    python -m flowdec.train.export random --out tiny-model   # untrained, tiny, for tests

The model folder holds ``encoder.onnx``, ``decoder.onnx``, ``decoder_stream.onnx`` and
``postfilter.onnx`` plus ``model_card.json`` with one section per model. EMA weights are
exported.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ..model.files import STREAM_DECODER, describe_files, files_id
from .codec_model import Codec, ExportDecoder, ExportEncoder, StreamDecoder, load_codec
from .config import CodecConfig, CodecRun
from .postfilter_model import ENVELOPE, INPUT_LEVEL, PEAK_TOP_DBFS, PostfilterConfig, PostfilterNet

OPSET = 17


def store_float16(path: Path) -> None:
    """Rewrite the ONNX file at ``path`` so its float32 weights are stored as float16, each
    cast back to float32 when the session starts (onnxruntime folds the casts once; the
    arithmetic stays float32). Halves the file; exact for weights already rounded to float16
    (``load_codec(..., float16=True)``, the EMA weights files)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    casts = []
    for t in model.graph.initializer:
        if t.data_type != onnx.TensorProto.FLOAT:
            continue
        value = numpy_helper.to_array(t)
        half = value.astype(np.float16)
        if not np.isfinite(half).all():
            raise ValueError(f"{path.name}: weight {t.name!r} does not fit in float16")
        name = t.name
        t.CopyFrom(numpy_helper.from_array(half, f"{name}.float16"))
        casts.append(helper.make_node("Cast", [t.name], [name], to=onnx.TensorProto.FLOAT))
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(path))


def _dft_tables(win: int) -> dict[str, Any]:
    """The DFT tables the codec's frame analysis and synthesis use (``codec_model``), by
    name, as torch computes them."""
    from .codec_model import dft_angles, hann_periodic

    ang = dft_angles(win)
    w = hann_periodic(win)
    cos, sin = torch.cos(ang), torch.sin(ang)
    basis = torch.cat([cos * w, -sin * w], 0)
    return {"cos": cos.numpy(), "neg_sin": (-sin).numpy(),
            "analysis": basis[:, None, :].numpy(),
            "analysis_rows": basis.T.contiguous().numpy()}  # the streaming encoder's


def _dft_table_nodes(kind: str, win: int, out: str) -> list[Any]:
    """ONNX nodes computing the table ``kind`` of :func:`_dft_tables` into ``out`` from a few
    scalars: onnxruntime folds them into a constant when a session starts, so the file does
    not carry the table."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    p = f"{out}/dft"

    def const(name: str, value: Any) -> str:
        nodes.append(helper.make_node("Constant", [], [f"{p}/{name}"],
                                      value=numpy_helper.from_array(np.asarray(value))))
        return f"{p}/{name}"

    def op(kind_: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(kind_, inputs, [f"{p}/{name}"], **attrs))
        return f"{p}/{name}"

    f32 = np.float32
    zero, one = const("zero", f32(0)), const("one", f32(1))
    f = op("Range", [zero, const("n_freq", f32(win // 2 + 1)), one], "f")
    n = op("Range", [zero, const("win", f32(win)), one], "n")
    f = op("Unsqueeze", [f, const("axis1", np.array([1], np.int64))], "f_col")
    n = op("Unsqueeze", [n, const("axis0", np.array([0], np.int64))], "n_row")
    r = op("Mod", [op("Mul", [f, n], "fn"), const("win_mod", f32(win))], "fn_mod", fmod=1)
    ang = op("Mul", [r, const("step", f32(2 * np.pi / win))], "angle")
    cos = op("Cos", [ang], "cos")
    neg_sin = op("Neg", [op("Sin", [ang], "sin")], "neg_sin")
    if kind == "cos":
        nodes.append(helper.make_node("Identity", [cos], [out]))
    elif kind == "neg_sin":
        nodes.append(helper.make_node("Identity", [neg_sin], [out]))
    else:  # analysis: [cos·w; −sin·w] with the periodic Hann window w (float64, as torch)
        k = op("Range", [const("zero64", 0.0), const("win64", float(win)), const("one64", 1.0)],
               "k")
        c = op("Cos", [op("Mul", [k, const("step64", 2 * np.pi / win)], "k_ang")], "k_cos")
        w = op("Sub", [const("half", 0.5), op("Mul", [const("half_", 0.5), c], "half_cos")],
               "hann64")
        w = op("Cast", [w], "hann", to=TensorProto.FLOAT)
        both = op("Concat", [op("Mul", [cos, w], "cos_w"), op("Mul", [neg_sin, w], "sin_w")],
                  "basis", axis=0)
        if kind == "analysis_rows":  # [win, 2F]: frames as rows (codec_model.StreamEncoder)
            nodes.append(helper.make_node("Transpose", [both], [out], perm=[1, 0]))
        else:
            nodes.append(helper.make_node("Unsqueeze",
                                          [both, const("axis1b", np.array([1], np.int64))],
                                          [out]))
    return nodes


def compute_dft_tables_in_graph(path: Path, win: int, tolerance: float = 1e-6) -> int:
    """Replace the DFT tables that the ONNX exporter froze into constants (megabytes each)
    by the nodes that compute them, in the file at ``path``; returns how many. A table is
    replaced only where it equals one of :func:`_dft_tables` and the nodes reproduce it in
    onnxruntime within ``tolerance``."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    tables = _dft_tables(win)
    computed: dict[str, np.ndarray] = {}
    for kind in tables:
        nodes = _dft_table_nodes(kind, win, "table")
        info = helper.make_tensor_value_info("table", onnx.TensorProto.FLOAT, None)
        g = helper.make_graph(nodes, "table", [], [info])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        computed[kind] = sess.run(None, {})[0]
    model = onnx.load(str(path))
    out_nodes: list[Any] = []
    replaced = 0
    for node in model.graph.node:
        value = None
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            t = node.attribute[0].t
            if t.data_type == onnx.TensorProto.FLOAT and len(t.raw_data) >= 1 << 16:
                value = numpy_helper.to_array(t)
        kind = next((k for k, v in tables.items() if value is not None and v.shape == value.shape
                     and np.abs(v - value).max() <= tolerance
                     and np.abs(computed[k] - value).max() <= tolerance), None)
        if kind is None:
            out_nodes.append(node)
            continue
        out_nodes.extend(_dft_table_nodes(kind, win, node.output[0]))
        replaced += 1
    del model.graph.node[:]
    model.graph.node.extend(out_nodes)
    onnx.save(model, str(path))
    return replaced


def _onnx_export(*args: Any, **kwargs: Any) -> None:
    """``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``, on purpose: its
    graphs are what the runtime and these rewrites expect), without its deprecation notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript",
                                DeprecationWarning)
        torch.onnx.export(*args, **kwargs)


def _export(module: torch.nn.Module, example: torch.Tensor, path: Path, in_name: str,
            out_name: str, dynamic: dict[str, dict[int, str]], win: int) -> None:
    """Export ``module`` to ``path``: DFT tables computed in the graph, weights in float16."""
    tmp = path.with_suffix(".part.onnx")
    try:
        _onnx_export(module, (example,), str(tmp), input_names=[in_name],
                          output_names=[out_name], dynamic_axes=dynamic, opset_version=OPSET,
                          dynamo=False, do_constant_folding=False)
        compute_dft_tables_in_graph(tmp, win)
        store_float16(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def count_flops_per_second(model: Codec) -> dict[str, float]:
    """Multiply-accumulates ×2 per second of 48 kHz audio, counted from conv/linear shapes."""
    cfg = model.cfg
    fps = cfg.frame_rate
    n_freq = cfg.win // 2 + 1
    block = 2 * (cfg.dim * cfg.kernel + 2 * cfg.dim * cfg.dim * cfg.mlp_ratio)
    enc = 2 * (2 * n_freq * cfg.win + 2 * n_freq * cfg.dim) + cfg.enc_blocks * block
    per_level = cfg.dim * cfg.codebook_dim * 2 + cfg.codebook_size * cfg.codebook_dim
    enc += cfg.n_codebooks * 2 * per_level
    dec = cfg.dec_blocks * block + 2 * (cfg.dim * 3 * n_freq + 2 * n_freq * cfg.win)
    return {"encoder_gflops_per_s": enc * fps / 1e9, "decoder_gflops_per_s": dec * fps / 1e9}


def update_card(out_dir: Path, section: str, content: dict[str, Any]) -> Path:
    """Put ``section`` into the folder's card, with the model id and the files it names (the
    id is computed here, once: loading a model only compares file sizes)."""
    path = out_dir / "model_card.json"
    card: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    card[section] = content
    card["model_id"] = files_id([out_dir / "encoder.onnx", out_dir / "decoder.onnx"])
    card["files"] = describe_files(out_dir)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def export_plain(model: Codec, out: Path) -> None:
    """Write encoder.onnx and decoder.onnx of ``model`` into ``out`` (their bytes define the
    model id)."""
    audio = torch.randn(1, model.cfg.hop * 12) * 0.1
    with torch.no_grad():
        enc, dec = ExportEncoder(model).eval(), ExportDecoder(model).eval()
        _export(enc, audio, out / "encoder.onnx", "audio", "codes",
                {"audio": {0: "batch", 1: "samples"}, "codes": {0: "batch", 2: "frames"}},
                model.cfg.win)
        _export(dec, enc(audio), out / "decoder.onnx", "codes", "audio",
                {"codes": {0: "batch", 1: "codebooks", 2: "frames"},
                 "audio": {0: "batch", 1: "samples"}}, model.cfg.win)


def export_stream(model: Codec, out: Path, only_missing: bool = False) -> list[Path]:
    """Write the streaming decoder and the streaming encoder of ``model`` into ``out`` (next
    to its decoder.onnx and encoder.onnx, whose weights they read); ``only_missing``: leave
    those already there as they are. Returns the files written."""
    from ..pipeline.stream_encoder import STREAM_ENCODER
    from .codec_model import StreamEncoder

    written = []
    cfg = model.cfg
    if not (only_missing and (out / STREAM_DECODER).is_file()):
        dec = StreamDecoder(model).eval()
        b, n = 1, 4
        codes = torch.randint(0, cfg.codebook_size, (b, cfg.n_codebooks, n))
        first, end = torch.zeros(b, dtype=torch.long), torch.full((b,), 1000, dtype=torch.long)
        state = (torch.zeros(b, len(dec.trunk.blocks), cfg.dim, dec.trunk.history),
                 torch.zeros(b, cfg.hop))
        names = ["codes", "first", "end", "trunk_state", "synthesis_state"]
        outs = ["audio", "trunk_state_out", "synthesis_state_out"]
        dynamic = {name: {0: "batch"} for name in names + outs}
        dynamic["codes"] = {0: "batch", 1: "codebooks", 2: "frames"}
        dynamic["audio"] = {0: "batch", 1: "samples"}
        _export_stream_graph(dec, (codes, first, end, *state), names, outs, dynamic,
                             out / STREAM_DECODER, out / "decoder.onnx", cfg.win)
        written.append(out / STREAM_DECODER)
    if not (only_missing and (out / STREAM_ENCODER).is_file()):
        enc = StreamEncoder(model).eval()
        b, n = 1, 4
        audio = torch.randn(b, n * cfg.hop) * 0.1
        first, end = torch.zeros(b, dtype=torch.long), torch.full((b,), 1000, dtype=torch.long)
        state = (torch.zeros(b, cfg.hop), torch.zeros(b, len(enc.lookahead), enc.history, cfg.dim))
        names = ["audio", "first", "end", "analysis_state", "trunk_state"]
        outs = ["codes", "analysis_state_out", "trunk_state_out"]
        dynamic = {name: {0: "batch"} for name in names + outs}
        dynamic["audio"] = {0: "batch", 1: "samples"}
        dynamic["codes"] = {0: "batch", 2: "frames"}
        _export_stream_graph(enc, (audio, first, end, *state), names, outs, dynamic,
                             out / STREAM_ENCODER, out / "encoder.onnx", cfg.win)
        written.append(out / STREAM_ENCODER)
    return written


def _export_stream_graph(module: torch.nn.Module, example: tuple[torch.Tensor, ...],
                         names: list[str], outs: list[str], dynamic: dict[str, dict[int, str]],
                         path: Path, plain: Path, win: int) -> None:
    """Export a streaming graph to ``path``: DFT tables computed in the graph, weights in
    float16 read from the plain model file ``plain`` (:func:`_link_weights`)."""
    tmp = path.with_suffix(".part.onnx")
    try:
        with torch.no_grad():
            _onnx_export(module, example, str(tmp), input_names=names, output_names=outs,
                         dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
                         do_constant_folding=False)
        compute_dft_tables_in_graph(tmp, win)
        store_float16(tmp)
        _link_weights(tmp, plain)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _link_weights(path: Path, plain: Path, min_bytes: int = 4096) -> None:
    """Make the graph at ``path`` read its weights (and large constants) from the plain
    model file ``plain`` in the same folder instead of holding a copy: each tensor becomes
    ONNX external data pointing at the identical bytes inside ``plain`` (the streaming graph
    holds the same parameters; this keeps it under 100 kB instead of 20 MB)."""
    import onnx

    data = plain.read_bytes()
    model = onnx.load(str(path))

    def link(t: onnx.TensorProto) -> None:
        raw = t.raw_data
        at = data.find(raw) if raw else -1
        if at < 0:
            raise RuntimeError(f"{path.name}: tensor {t.name!r} is not in {plain.name}; the "
                               "streaming graph must be exported from the same weights")
        del t.external_data[:]
        t.data_location = onnx.TensorProto.EXTERNAL
        refs = (("location", plain.name), ("offset", str(at)), ("length", str(len(raw))))
        for key, value in refs:
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        t.ClearField("raw_data")

    for t in model.graph.initializer:
        link(t)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.HasField("t") and len(a.t.raw_data) >= min_bytes:
                    link(a.t)
    onnx.save(model, str(path))


def add_stream(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Add the streaming graphs it lacks (decoder, encoder) to an exported model folder, from
    the run (or weights file) it was exported from, and name them in the card's ``files``;
    refuses a run whose weights are not that model's (the plain export must reproduce the
    folder's model id). The files already there, and so the model id, stay as they are."""
    import tempfile

    out = Path(out_dir)
    if not (out / "model_card.json").is_file() or not (out / "decoder.onnx").is_file():
        raise SystemExit(f"{out} is not an exported model folder (no model_card.json or "
                         "decoder.onnx): export the codec there first (export codec)")
    card = json.loads((out / "model_card.json").read_text())
    model, _, _ = load_codec(run_dir, float16=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        export_plain(model, t)
        got = files_id([t / "encoder.onnx", t / "decoder.onnx"])
    if got != card.get("model_id"):
        raise SystemExit(f"{run_dir} exports as model {got}, but {out} is model "
                         f"{card.get('model_id')}: give the run (or weights file) it was "
                         "exported from")
    export_stream(model, out, only_missing=True)
    path = out / "model_card.json"
    card = json.loads(path.read_text())
    files = describe_files(out)
    changed = [n for n, want in card.get("files", {}).items() if files.get(n) != want]
    if changed:
        raise SystemExit(f"{out}: {', '.join(changed)} no longer match the card: restore the "
                         "folder's files before adding to it")
    card["files"] = files
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, path)
    return out


def validation_curve(path: Path, n_q: int) -> list[dict[str, float]]:
    """The run's validation rows at ``n_q`` codebooks (step, hours, mel distance and SI-SDR
    per domain on the run's held-out crops); empty without ``valid.csv``."""
    import csv

    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [k for k in (rows[0] if rows else {}) if k.endswith(f"_q{n_q}")]
    return [{"step": int(r["step"]), "hours": round(float(r["wall_s"]) / 3600, 3),
             **{k: float(r[k]) for k in keep if r.get(k)}} for r in rows]


def export_codec(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                 data_note: dict[str, Any] | None = None) -> Path:
    """Export EMA weights of ``run_dir`` into ``out_dir``; returns the model card path."""
    model, cfg, info = load_codec(run_dir, float16=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    export_plain(model, out)
    export_stream(model, out)
    m = cfg.model
    valid_path = Path(run_dir) / "metrics.json"
    metrics = json.loads(valid_path.read_text()) if valid_path.exists() else {}
    curve = validation_curve(Path(run_dir) / "valid.csv", m.n_codebooks)
    if curve:
        metrics["validation_curve"] = curve
    section = {
        "architecture": "spectral ConvNeXt encoder → factorised residual VQ → spectral ConvNeXt "
                        "decoder (predicts log-magnitude + phase per frame, overlap-add)",
        "sample_rate": m.sample_rate,
        "hop": m.hop,
        "window": m.win,
        "frame_rate": m.frame_rate,
        "codebooks": m.n_codebooks,
        "codebook_size": m.codebook_size,
        "bits_per_code": (m.codebook_size - 1).bit_length(),
        "bitrates_kbps": {str(n): m.bitrate_kbps(n) for n in m.bitrates_codebooks},
        "lookahead_frames": m.lookahead_frames,
        # codec frames of context (as flowdec.pipeline.stages uses them)
        "receptive_field_frames": {
            "encoder_past": m.enc_blocks * (m.kernel - 1) - m.enc_lookahead_blocks + 1,
            "encoder_future": m.enc_lookahead_blocks,
            "decoder_past": m.dec_blocks * (m.kernel - 1) - m.dec_lookahead_blocks,
            "decoder_future": m.dec_lookahead_blocks + 1,
        },
        "parameters": {
            "encoder": sum(p.numel() for p in model.encoder.parameters())
            + sum(p.numel() for p in model.quantizer.parameters()),
            "decoder": sum(p.numel() for p in model.decoder.parameters()),
        },
        "flops": count_flops_per_second(model),
        "config": cfg.to_dict(),
        "training": {
            "steps": info["steps"],
            "wall_hours": round(info["wall_s"] / 3600, 3),
            "hardware": f"{platform.machine()} CPU ({os.cpu_count()} cores)"
            if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
            "data": data_note or {},
            "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
        "metrics": metrics,
    }
    return update_card(out, "codec", section)


def export_postfilter(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                      metrics: dict[str, Any] | None = None) -> Path:
    """Export the postfilter's EMA weights to ``out_dir/postfilter.onnx`` + card section."""
    from .loop import load_allowing_new_layers

    state = torch.load(Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
    conf = state["config"]
    cfg = PostfilterConfig(**conf["net"])
    net = PostfilterNet(cfg)
    # a run from before a layer was added: the new layers keep their (neutral) zero init
    load_allowing_new_layers(net, state["ema"], run_dir)
    net.eval()
    out = Path(out_dir)
    x = torch.randn(1, 2, cfg.n_freq, 4 * cfg.patch_t)
    tmp = out / "postfilter.part.onnx"
    with torch.no_grad():
        _onnx_export(net, (x, x, torch.zeros(1)), str(tmp), input_names=["x", "y", "t"],
                          output_names=["v"],
                          dynamic_axes={"x": {0: "batch", 3: "frames"},
                                        "y": {0: "batch", 3: "frames"},
                                        "v": {0: "batch", 3: "frames"}},
                          opset_version=OPSET, dynamo=False)
    os.replace(tmp, out / "postfilter.onnx")
    sig = conf["sigma"]
    section = {
        "architecture": f"patchified ({cfg.patch_f} bins × {cfg.patch_t} frames) ConvNeXt-2D, "
                        f"{cfg.channels} channels, {cfg.blocks} blocks, FiLM time conditioning, "
                        "additive output plus gains on X_t − Y and Y: per band (from t), per "
                        "bin (from the patch features, and from the bin's own log-levels)",
        "n_fft": cfg.n_fft, "hop": cfg.hop, "alpha": cfg.alpha, "beta": cfg.beta,
        "sigma_y": sig["sigma_y"], "sigma_y_global": sig["sigma_y_global"],
        "sigma_estimation": {k: v for k, v in sig.items() if k not in ("sigma_y", "beta")},
        "frames_multiple": cfg.patch_t,
        "lookahead_frames": cfg.lookahead_frames,
        "input_level": dict(INPUT_LEVEL, why="inputs are presented at the top of the training "
                            f"peak range [{conf['train'].get('min_peak_dbfs', -18.0)}, "
                            f"{PEAK_TOP_DBFS}] dBFS by a peak follower with one frame of "
                            "look-ahead (flowdec.dsp.level.PeakNormalizer) and scaled back after"),
        "envelope": dict(ENVELOPE, why="the network gets its output's band levels wrong (see "
                         "benchmarks/bench_envelope.py: the top octave too low, the bands "
                         "below 6 kHz too high against the codec output, at any NFE): each "
                         "solved frame gets the codec output's band energies "
                         "(flowdec.dsp.envelope)"),
        "parameters": sum(p.numel() for p in net.parameters()),
        "config": conf["net"],
        "training": {
            "steps": int(state["step"]),
            "wall_hours": round(float(state.get("wall_s", 0.0)) / 3600, 3),
            "train_config": conf["train"],
            "codec_run": conf.get("codec_run"),
            "hardware": conf.get("hardware") or "unrecorded",  # of the run's last launch
            "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
        "metrics": metrics or {},
        "recommended": False,  # until an evaluation says otherwise (export evaluation)
    }
    return update_card(out, "postfilter", section)


def checkpoint_to_weights(run_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """EMA weights of a run's checkpoint as a small float16 file for git (``--init`` reads it)."""
    s = torch.load(Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
    state = {k: v.half() if v.is_floating_point() else v for k, v in s["ema"].items()}
    tmp = Path(out).with_suffix(".part")
    torch.save({"state": state, "step": s["step"], "wall_s": s.get("wall_s", 0.0),
                "config": s["config"]}, tmp)
    os.replace(tmp, out)


def postfilter_verdict(settings: list[dict[str, Any]], nfe: int = 6) -> dict[str, Any] | None:
    """Does the postfilter (midpoint, per-band σ_y, ``nfe``) improve on the plain codec?

    Yes when, at every evaluated bitrate and in every domain, ViSQOL is higher and FAD lower
    than the codec alone (the metrics that are available); None without both systems.
    """
    by = {(s["name"], s["bitrate"]): s["domains"] for s in settings}
    rates = sorted({b for (n, b) in by if n == "ndac" and (f"flowdec-nfe{nfe}", b) in by})
    if not rates:
        return None
    checks = []
    for b in rates:
        for dom, base in by[("ndac", b)].items():
            post = by[(f"flowdec-nfe{nfe}", b)].get(dom, {})
            for metric, better in (("visqol", 1), ("fad", -1)):
                if base.get(metric) is not None and post.get(metric) is not None:
                    checks.append({"bitrate": b, "domain": dom, "metric": metric,
                                   "codec": base[metric], "postfilter": post[metric],
                                   "better": bool(better * (post[metric] - base[metric]) > 0)})
    if not checks:
        return None
    return {"recommended": all(c["better"] for c in checks), "nfe": nfe,
            "rule": "ViSQOL higher and FAD lower than the codec alone at every bitrate, "
                    "in every domain", "checks": checks}


def add_evaluation(out_dir: str | os.PathLike[str], summary_path: str | os.PathLike[str],
                   command: str, key: str = "evaluation") -> Path:
    """Put the measured metrics of a ``flowdec eval`` run (its summary.json) into the card."""
    out = Path(out_dir)
    summary = json.loads(Path(summary_path).read_text())
    keep = ("name", "system", "bitrate", "nfe", "solver", "sigma", "rtf", "domains")
    section = {
        "command": command,
        "clips": summary.get("clips", []),
        "machine": summary.get("machine"),
        "metrics_available": summary.get("metrics", {}),
        "opus": summary.get("opus"),
        "settings": [{k: s[k] for k in keep if k in s} for s in summary["settings"]],
    }
    path = out / "model_card.json"
    card: dict[str, Any] = json.loads(path.read_text())
    card[key] = section
    verdict = postfilter_verdict(section["settings"])
    if verdict is not None and "postfilter" in card:
        card["postfilter"]["recommended"] = verdict["recommended"]
        card["postfilter"]["recommendation"] = dict(verdict, evaluation=key)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def check_release(folder: Path, codec_run: str | os.PathLike[str]) -> list[str]:
    """The checks a model folder passes before it ships; returns what was checked.

    Files as the card names them (SHA-256); the runtime loads it; the ONNX encoder and decoder
    compute what the trained model (weights rounded to float16) computes on the example clip;
    the streaming decoder decodes like the plain one; the streaming encoder's codes are the
    same for any split of the input and agree with encoder.onnx's; every bitrate round-trips
    to finite audio of the input's shape; the postfilter (if any) enhances to finite audio.
    """
    import numpy as np
    from pedalboard.io import AudioFile

    from .. import Codec, Postfilter
    from ..audio import resample
    from ..codec import example_clip
    from ..model.files import check_files
    from ..pipeline.stages import DecoderStage
    from .codec_model import ExportDecoder, ExportEncoder

    done = []
    card = json.loads((folder / "model_card.json").read_text())
    check_files(folder, card, full=True)
    done.append("files match the card (SHA-256)")
    codec = Codec(folder, threads=2)
    with AudioFile(str(example_clip())) as f:
        audio, rate = f.read(f.frames), int(f.samplerate)
    x = resample(audio.mean(0, keepdims=True), rate, codec.card.sample_rate)
    x = x[:, : x.shape[1] // codec.card.hop * codec.card.hop]
    model, cfg, _ = load_codec(codec_run, float16=True)
    with torch.no_grad():
        codes_t = ExportEncoder(model)(torch.from_numpy(x)).numpy()
        y_t = ExportDecoder(model)(torch.from_numpy(codes_t)).numpy()
    codes_o = codec.encoder.session.run(None, {"audio": x})[0]
    agree = float((codes_o == codes_t).mean())
    if agree < 0.98:  # near-ties may flip under another summation order; not more
        raise RuntimeError(f"encoder.onnx agrees with the trained model on {agree:.1%} of codes")
    y_o = codec.decoder.session.run(None, {"codes": codes_t})[0]
    err = float(np.abs(y_o - y_t).max() / max(1.0, float(np.abs(y_t).max())))
    if err > 1e-4:
        raise RuntimeError(f"decoder.onnx differs from the trained model by {err:.2e}")
    done.append(f"ONNX = trained model on the example clip (codes {agree:.2%}, audio {err:.1e})")
    if codec.decoder_stream is None:
        raise RuntimeError(f"{STREAM_DECODER} is missing")
    frames = codes_t.shape[2]
    stage = codec.decoder_stage(1, cfg.model.n_codebooks, 7)
    y_s = np.concatenate([stage.push(codes_t[:, :, i : i + 7]) for i in range(0, frames, 7)]
                         + [stage.finish()], axis=1)
    ref = DecoderStage(codec.decoder, codec.card, 1, cfg.model.n_codebooks, frames)
    y_r = np.concatenate([ref.push(codes_t), ref.finish()], axis=1)
    err = float(np.abs(y_s - y_r).max() / max(1.0, float(np.abs(y_r).max())))
    if err > 1e-4:
        raise RuntimeError(f"{STREAM_DECODER} differs from decoder.onnx by {err:.2e}")
    done.append(f"streaming decoder = decoder ({err:.1e})")
    done.append(_check_stream_encoder(codec, x, codes_o))
    for kbps in codec.bitrates:
        y = codec.roundtrip(audio, rate, bitrate=kbps, postfilter=False)
        if y.shape != audio.shape or not np.isfinite(y).all():
            raise RuntimeError(f"round trip at {kbps:g} kbit/s: shape {y.shape}, not finite")
    done.append(f"round trips at {', '.join(f'{b:g}' for b in codec.bitrates)} kbit/s")
    if codec.has_postfilter:
        y = codec.roundtrip(audio, rate, bitrate=codec.bitrates[-1], postfilter=False)
        z = Postfilter(folder, threads=2).enhance(y, nfe=2, seed=0, sample_rate=rate)
        if z.shape != y.shape or not np.isfinite(z).all():
            raise RuntimeError("the postfilter's output is not finite")
        done.append("postfilter enhances to finite audio")
    return done


def add_lineage(folder: Path, old: dict[str, Any] | None) -> Path:
    """Write into ``folder``'s card the flowdec version that ships it and the models shipped
    before it (``old``: the card it replaces), so a file from an older model is refused with
    a line naming that model and its flowdec version."""
    from .. import __version__

    path = folder / "model_card.json"
    card = json.loads(path.read_text())
    previous = list(old.get("previous_models", [])) if old else []
    if old is not None and old.get("model_id") != card["model_id"]:
        previous.insert(0, {"model_id": old["model_id"],
                            "flowdec_version": old.get("flowdec_version"),
                            "exported": old.get("codec", {}).get("training", {})
                            .get("exported")})
    card["flowdec_version"] = __version__
    card["previous_models"] = previous
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path


def random_model(out_dir: str | os.PathLike[str], codec: CodecConfig | None = None,
                 postfilter: PostfilterConfig | None = None, seed: int = 0) -> Path:
    """A model folder with untrained (random) weights: the same graphs and card as a
    release, for tests that need a model but not a trained one. Defaults are tiny (16
    channels, 2 blocks a side; a 8-channel, 1-block postfilter); the bitrates, frame rate,
    look-ahead and STFT settings are the shipped model's. Runs no checks."""
    torch.manual_seed(seed)
    out = Path(out_dir)
    runs = out.parent / f".{out.name}.runs"
    (runs / "postfilter").mkdir(parents=True, exist_ok=True)
    run = CodecRun(model=codec or CodecConfig(dim=16, enc_blocks=2, dec_blocks=2))
    weights = runs / "codec.pt"
    state = Codec(run.model).eval().state_dict()
    torch.save({"state": state, "step": 0, "wall_s": 0.0, "config": run.to_dict()}, weights)
    export_codec(weights, out, {"note": "random weights (flowdec.train.export.random_model)"})
    pf = postfilter or PostfilterConfig(channels=8, blocks=1, lookahead_blocks=1)
    net = PostfilterNet(pf).eval()
    sigma = {"sigma_y": [0.2] * pf.n_freq, "sigma_y_global": 0.2, "beta": pf.beta,
             "note": "constant, untrained"}
    torch.save({"ema": net.state_dict(), "step": 0, "wall_s": 0.0,
                "config": {"net": dataclasses.asdict(pf), "sigma": sigma,
                           "train": {"min_peak_dbfs": -18.0}}},
               runs / "postfilter" / "checkpoint.pt")
    export_postfilter(runs / "postfilter", out)
    shutil.rmtree(runs)
    return add_lineage(out, None)


def _check_stream_encoder(codec: Any, x: Any, codes_plain: Any) -> str:
    """The streaming encoder (``flowdec.pipeline.stream_encoder``) gives the codes of one call over
    the whole clip ``x`` [1, T] for several splits, and agrees with ``encoder.onnx``'s codes
    ``codes_plain`` on at least 98 % of them (near-ties may flip under another summation
    order; not more)."""
    import numpy as np

    from ..pipeline.stream_encoder import (
        STREAM_ENCODER,
        StreamingEncoderStage,
        encode_offline,
        load_stream_encoder,
    )

    net = load_stream_encoder(codec.folder, threads=2)
    if net is None:
        raise RuntimeError(f"{STREAM_ENCODER} is missing")
    ref = encode_offline(net, codec.card, x)
    rng = np.random.default_rng(0)
    for chunk, sizes in ((1, [640]), (7, [1]), (3, list(rng.integers(1, 5000, 64)))):
        stage = StreamingEncoderStage(net, codec.card, 1, chunk)
        parts, i, j = [], 0, 0
        while i < x.shape[1]:
            n = int(sizes[j % len(sizes)])
            parts.append(stage.push(x[:, i : i + n]))
            i, j = i + n, j + 1
        got = np.concatenate(parts + [stage.finish()], axis=2)
        if got.shape != ref.shape or not (got == ref).all():
            raise RuntimeError(f"{STREAM_ENCODER}: pushing {sizes[:3]}... samples at a time "
                               "changes the codes")
    k = codes_plain.shape[2] - codec.card.encoder_future_frames  # the end's padding differs
    agree = float((ref[:, :, :k] == codes_plain[:, :, :k]).mean())
    if agree < 0.98:
        raise RuntimeError(f"{STREAM_ENCODER} agrees with encoder.onnx on {agree:.1%} of codes")
    return f"streaming encoder: same codes for any split, {agree:.2%} of encoder.onnx's"


def release(codec_run: str | os.PathLike[str], out_dir: str | os.PathLike[str],
            postfilter_run: str | os.PathLike[str] | None = None,
            data_note: dict[str, Any] | None = None) -> Path:
    """Export a model folder in one step: codec (+ streaming decoder) and postfilter into a
    staging folder next to ``out_dir``, the card with the model id, its files, the flowdec
    version that ships it and the models shipped before it (so a file from an older model
    is refused with a line naming it), the release checks; then the staging folder
    replaces ``out_dir``. Nothing in ``out_dir`` changes if a step fails."""
    from .. import __version__

    out = Path(out_dir)
    old_path = out / "model_card.json"
    old = json.loads(old_path.read_text()) if old_path.is_file() else None
    stage = out.parent / f".{out.name}.release"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        export_codec(codec_run, stage, data_note)
        if postfilter_run is not None:
            export_postfilter(postfilter_run, stage)
        card = json.loads((stage / "model_card.json").read_text())
        if old is not None and old.get("model_id") != card["model_id"] and \
                old.get("flowdec_version") == __version__:
            raise SystemExit(
                f"flowdec {__version__} already shipped model {old['model_id']} in {out}: "
                "raise the version (pyproject.toml, flowdec/__init__.py) before a release")
        add_lineage(stage, old)
        for line in check_release(stage, codec_run):
            print(f"  ok: {line}", flush=True)
        if out.exists():
            gone = out.parent / f".{out.name}.replaced"
            shutil.rmtree(gone, ignore_errors=True)
            os.replace(out, gone)
            os.replace(stage, out)
            shutil.rmtree(gone)
        else:
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out / "model_card.json"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=["release", "codec", "postfilter", "weights", "evaluation",
                                    "stream", "random"],
                   help="release: codec (--run) and postfilter (--postfilter-run) into the "
                        "model folder --out, with the card and the release checks; "
                        "weights: write the run's EMA weights (float16) to --out for git; "
                        "evaluation: put --summary (flowdec eval's summary.json) into the card; "
                        "stream: add the streaming graphs (decoder, encoder) it lacks to the "
                        "model folder --out, from "
                        "the run it was exported from; random: a tiny untrained model folder "
                        "with the shipped model's graphs and card, for tests")
    p.add_argument("--summary", help="summary.json of a flowdec eval run (with 'evaluation')")
    p.add_argument("--command", default="", help="the eval command that made --summary")
    p.add_argument("--key", default="evaluation", help="card key for --summary (evaluation)")
    p.add_argument("--run", help="run folder (codec, postfilter, weights) or codec weights file")
    p.add_argument("--postfilter-run", help="release: the postfilter's run folder")
    p.add_argument("--out", required=True)
    p.add_argument("--data-note", help="JSON file describing the training data (hours per domain)")
    args = p.parse_args(argv)
    note = json.loads(Path(args.data_note).read_text()) if args.data_note else None
    t0 = time.time()
    if args.what == "evaluation":
        print(f"updated {add_evaluation(args.out, args.summary, args.command, args.key)}")
        return
    if args.what == "weights":
        checkpoint_to_weights(args.run, args.out)
        print(f"wrote {args.out}")
        return
    if args.what == "stream":
        print(f"added the streaming graphs to {add_stream(args.run, args.out)} in "
              f"{time.time() - t0:.1f} s")
        return
    if args.what == "random":
        print(f"wrote {random_model(args.out)}")
        return
    if args.what == "release":
        card = release(args.run, args.out, args.postfilter_run, note)
        print(f"released {json.loads(card.read_text())['model_id']} to {args.out} in "
              f"{time.time() - t0:.1f} s")
        return
    if args.what == "codec":
        card = export_codec(args.run, args.out, note)
    else:
        card = export_postfilter(args.run, args.out)
    print(f"exported to {args.out} in {time.time() - t0:.1f} s; card {card}")


if __name__ == "__main__":
    main()
