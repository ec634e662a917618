"""ONNX export of the codec (encoder: audio → codes; decoder: codes → audio) and model cards.

    python -m flowdec.train.export codec --run runs/codec --out python/flowdec/models/flowdec-75

The model folder holds ``encoder.onnx``, ``decoder.onnx`` (and later ``postfilter.onnx``) plus
``model_card.json`` with one section per model. EMA weights are exported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from ..model_files import STREAM_DECODER, files_id
from .codec_model import Codec, ExportDecoder, ExportEncoder, StreamDecoder
from .config import CodecRun

OPSET = 17


def load_codec(
    run_dir: str | os.PathLike[str], ema: bool = True
) -> tuple[Codec, CodecRun, dict[str, Any]]:
    """The codec of a run folder (its checkpoint's EMA or raw weights) or of a weights file
    (``--save-weights``: EMA weights in float16, loaded into a float32 model)."""
    path = Path(run_dir)
    weights_file = path.is_file()
    state = torch.load(path if weights_file else path / "checkpoint.pt", map_location="cpu",
                       weights_only=False)
    cfg = CodecRun.from_dict(state["config"])
    model = Codec(cfg.model)
    model.load_state_dict(state["state"] if weights_file else state["ema" if ema else "model"])
    model.eval()
    info = {"steps": int(state["step"]), "wall_s": float(state.get("wall_s", 0.0))}
    return model, cfg, info


def _export(module: torch.nn.Module, example: torch.Tensor, path: Path, in_name: str,
            out_name: str, dynamic: dict[str, dict[int, str]]) -> None:
    tmp = path.with_suffix(".part.onnx")
    torch.onnx.export(module, (example,), str(tmp), input_names=[in_name], output_names=[out_name],
                      dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
                      do_constant_folding=False)  # keep DFT bases computed, not stored
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
    path = out_dir / "model_card.json"
    card: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    card[section] = content
    card["model_id"] = files_id([out_dir / "encoder.onnx", out_dir / "decoder.onnx"])
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
                {"audio": {0: "batch", 1: "samples"}, "codes": {0: "batch", 2: "frames"}})
        _export(dec, enc(audio), out / "decoder.onnx", "codes", "audio",
                {"codes": {0: "batch", 1: "codebooks", 2: "frames"},
                 "audio": {0: "batch", 1: "samples"}})


def export_stream(model: Codec, out: Path) -> None:
    """Write the streaming decoder of ``model`` into ``out`` (next to its decoder.onnx, whose
    weights it reads)."""
    cfg = model.cfg
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
    path = out / STREAM_DECODER
    tmp = path.with_suffix(".part.onnx")
    with torch.no_grad():
        torch.onnx.export(dec, (codes, first, end, *state), str(tmp), input_names=names,
                          output_names=outs, dynamic_axes=dynamic, opset_version=OPSET,
                          dynamo=False, do_constant_folding=False)
    try:
        _link_weights(tmp, out / "decoder.onnx")
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
    """Add the streaming decoder to an exported model folder, from the run (or weights file)
    it was exported from; refuses a run whose weights are not that model's (the plain export
    must reproduce the folder's model id)."""
    import tempfile

    out = Path(out_dir)
    if not (out / "model_card.json").is_file() or not (out / "decoder.onnx").is_file():
        raise SystemExit(f"{out} is not an exported model folder (no model_card.json or "
                         "decoder.onnx): export the codec there first (export codec)")
    card = json.loads((out / "model_card.json").read_text())
    model, _, _ = load_codec(run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        export_plain(model, t)
        got = files_id([t / "encoder.onnx", t / "decoder.onnx"])
    if got != card.get("model_id"):
        raise SystemExit(f"{run_dir} exports as model {got}, but {out} is model "
                         f"{card.get('model_id')}: give the run (or weights file) it was "
                         "exported from")
    export_stream(model, out)
    return out


def export_codec(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                 data_note: dict[str, Any] | None = None) -> Path:
    """Export EMA weights of ``run_dir`` into ``out_dir``; returns the model card path."""
    model, cfg, info = load_codec(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    export_plain(model, out)
    export_stream(model, out)
    m = cfg.model
    valid_path = Path(run_dir) / "metrics.json"
    metrics = json.loads(valid_path.read_text()) if valid_path.exists() else {}
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
        "receptive_field_frames": {  # codec frames of context (as flowdec.stages uses them)
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
    from .postfilter_model import PostfilterConfig, PostfilterNet
    from .train_postfilter import ENVELOPE, INPUT_LEVEL, PEAK_TOP_DBFS

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
        torch.onnx.export(net, (x, x, torch.zeros(1)), str(tmp), input_names=["x", "y", "t"],
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
                            "look-ahead (flowdec.level.PeakNormalizer) and scaled back after"),
        "envelope": dict(ENVELOPE, why="the network gets its output's band levels wrong (see "
                         "benchmarks/bench_envelope.py: the top octave too low, the bands "
                         "below 6 kHz too high against the codec output, at any NFE): each "
                         "solved frame gets the codec output's band energies "
                         "(flowdec.envelope)"),
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=["codec", "postfilter", "weights", "evaluation", "stream"],
                   help="weights: write the run's EMA weights (float16) to --out for git; "
                        "evaluation: put --summary (flowdec eval's summary.json) into the card; "
                        "stream: add the streaming decoder to the model folder --out, from "
                        "the run it was exported from")
    p.add_argument("--summary", help="summary.json of a flowdec eval run (with 'evaluation')")
    p.add_argument("--command", default="", help="the eval command that made --summary")
    p.add_argument("--key", default="evaluation", help="card key for --summary (evaluation)")
    p.add_argument("--run", help="run folder (codec, postfilter, weights)")
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
        print(f"added {STREAM_DECODER} to {add_stream(args.run, args.out)} in "
              f"{time.time() - t0:.1f} s")
        return
    if args.what == "codec":
        card = export_codec(args.run, args.out, note)
    else:
        card = export_postfilter(args.run, args.out)
    print(f"exported to {args.out} in {time.time() - t0:.1f} s; card {card}")


if __name__ == "__main__":
    main()
