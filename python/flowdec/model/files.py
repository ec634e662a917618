"""Locating and describing model folders (ONNX files + ``model_card.json``).

A model folder holds ``encoder.onnx``, ``decoder.onnx``, optionally ``postfilter.onnx`` and
the streaming decoder ``decoder_stream.onnx`` (the decoder's weights, read from
``decoder.onnx``, run on new frames with its context carried as state), and
``model_card.json`` with a ``codec`` section (sample rate, hop, codebooks, bitrates, receptive
fields, training and metrics) and a ``postfilter`` section (n_fft, hop, α, β, σ_y curve, ...).
The shipped model lives inside the package under ``flowdec/models/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dsp.envelope import Envelope

SHIPPED_MODEL = "flowdec-75"
STREAM_DECODER = "decoder_stream.onnx"
"""The streaming decoder; it holds no weights of its own but points into ``decoder.onnx``."""


class ModelError(RuntimeError):
    """A model folder is missing, incomplete or inconsistent."""


def models_root() -> Path:
    return Path(__file__).resolve().parent.parent / "models"


def resolve(model: str | os.PathLike[str] | None) -> Path:
    """The folder for ``model``: None → the shipped model; a name → a shipped folder; a path."""
    if model is None:
        model = SHIPPED_MODEL
    p = Path(model)
    if not p.is_dir():
        shipped = models_root() / str(model)
        if shipped.is_dir():
            p = shipped
        else:
            raise ModelError(
                f"model {model!r} not found: give a folder with encoder.onnx, decoder.onnx and "
                f"model_card.json, or one of {sorted(x.name for x in models_root().glob('*/'))}"
            )
    for name in ("encoder.onnx", "decoder.onnx", "model_card.json"):
        if not (p / name).is_file():
            raise ModelError(f"model folder {p} has no {name}")
    return p


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_id(paths: list[Path]) -> str:
    """The model id stored in .fdc files: first 16 hex digits of SHA-256 over the files."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def describe_files(folder: Path) -> dict[str, dict[str, Any]]:
    """The card's ``files``: size and SHA-256 of every ONNX file of a model folder."""
    return {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(folder.glob("*.onnx"))}


def check_files(folder: Path, card: dict[str, Any], full: bool = False) -> None:
    """Refuse a model folder whose ONNX files are not the ones its card names.

    The streaming decoder reads its weights from ``decoder.onnx`` by byte offset, so a
    replaced file would run with misplaced weights. Loading compares sizes (cheap); ``full``
    also compares SHA-256 (what the release checks do). Cards from before the ``files``
    record are checked by recomputing the model id.
    """
    files = card.get("files")
    model_id = str(card.get("model_id"))
    if files is None:
        if (folder / STREAM_DECODER).is_file():
            got = files_id([folder / "encoder.onnx", folder / "decoder.onnx"])
            if got != model_id:
                raise ModelError(
                    f"model folder {folder}: encoder.onnx and decoder.onnx are model {got}, but "
                    f"the card says {model_id}; {STREAM_DECODER} points into the original "
                    "decoder.onnx: restore the files, or re-export the model")
        return
    for name, want in files.items():
        p = folder / name
        size = p.stat().st_size if p.is_file() else None
        if size != want["bytes"] or (full and _sha256(p) != want["sha256"]):
            state = "missing" if size is None else "not the file the card names"
            raise ModelError(
                f"model folder {folder}: {name} is {state} (model {model_id}; "
                f"{STREAM_DECODER} reads its weights from decoder.onnx): restore the folder's "
                "files, or re-export the model (python -m flowdec.train.export release)")


@dataclass(frozen=True)
class CodecCard:
    """The codec section of a model card (all times in samples at ``sample_rate``)."""

    model_id: str
    flowdec_version: str | None  # the flowdec release that shipped this model
    # models shipped before this one: {"model_id", "flowdec_version", "exported"} each
    previous_models: tuple[dict[str, Any], ...]
    sample_rate: int
    hop: int
    codebooks: int
    bits_per_code: int
    bitrates_kbps: dict[int, float]  # codebooks → kbit/s
    encoder_past_frames: int  # frames of context before a frame that its code depends on
    encoder_future_frames: int
    decoder_past_frames: int
    decoder_future_frames: int
    raw: dict[str, Any]

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def codebooks_for(self, kbps: float) -> int:
        """Codebook count for a bitrate in kbit/s (must be one the card lists)."""
        for n, rate in self.bitrates_kbps.items():
            if abs(rate - kbps) < 1e-6:
                return n
        listed = ", ".join(f"{r:g}" for r in sorted(self.bitrates_kbps.values()))
        raise ValueError(f"bitrate {kbps:g} kbit/s is not available; choose one of {listed}")


@dataclass(frozen=True)
class PostfilterCard:
    n_fft: int
    hop: int
    alpha: float
    beta: float
    sigma_y: tuple[float, ...]
    sigma_y_global: float
    frames_multiple: int  # frame count must be a multiple of this (the network's time patch)
    lookahead_frames: int
    raw: dict[str, Any]
    # Whether decoding uses the postfilter by default: the card's evaluation found it
    # improves on the plain codec (flowdec.train.export.add_evaluation); absent: no, an
    # unevaluated postfilter runs only when asked for.
    recommended: bool = False
    # The level the network was trained at: inputs are presented at this peak level by a
    # peak follower with one frame of look-ahead (flowdec.dsp.level.PeakNormalizer); None
    # (absent): as they come.
    input_level: InputLevel | None = None
    # The output's band envelope is kept to the codec output's after the ODE solve
    # (flowdec.dsp.envelope); None (absent): the solver's output as it is.
    envelope: Envelope | None = None


@dataclass(frozen=True)
class InputLevel:
    """``input_level`` of a postfilter card (see :class:`flowdec.dsp.level.PeakNormalizer`)."""

    peak_dbfs: float
    release_db_per_s: float
    floor_dbfs: float


def _block_reach(kernel: int, blocks: int, lookahead_blocks: int) -> tuple[int, int]:
    future = lookahead_blocks
    past = blocks * (kernel - 1) - future
    return past, future


def _input_level(d: Any) -> InputLevel | None:
    if d is None:
        return None
    return InputLevel(float(d["peak_dbfs"]), float(d["release_db_per_s"]), float(d["floor_dbfs"]))


def _envelope(d: Any) -> Envelope | None:
    if d is None:
        return None
    return Envelope(int(d["bands"]), float(d["max_gain_db"]), float(d["keep_below_hz"]))


def load_cards(folder: Path) -> tuple[CodecCard, PostfilterCard | None]:
    """The codec and postfilter sections of a folder's card, after checking that its files
    are the ones the card names (:func:`check_files`)."""
    card = json.loads((folder / "model_card.json").read_text())
    check_files(folder, card)
    try:
        c = card["codec"]
        m = c["config"]["model"]
        enc_p, enc_f = _block_reach(m["kernel"], m["enc_blocks"], m["enc_lookahead_blocks"])
        dec_p, dec_f = _block_reach(m["kernel"], m["dec_blocks"], m["dec_lookahead_blocks"])
        codec = CodecCard(
            model_id=str(card["model_id"]),
            flowdec_version=card.get("flowdec_version"),
            previous_models=tuple(card.get("previous_models", ())),
            sample_rate=int(c["sample_rate"]),
            hop=int(c["hop"]),
            codebooks=int(c["codebooks"]),
            bits_per_code=int(c["bits_per_code"]),
            bitrates_kbps={int(k): float(v) for k, v in c["bitrates_kbps"].items()},
            encoder_past_frames=enc_p,
            encoder_future_frames=enc_f,
            decoder_past_frames=dec_p,
            decoder_future_frames=dec_f,
            raw=c,
        )
        post = None
        if "postfilter" in card and (folder / "postfilter.onnx").is_file():
            p = card["postfilter"]
            post = PostfilterCard(
                n_fft=int(p["n_fft"]), hop=int(p["hop"]), alpha=float(p["alpha"]),
                beta=float(p["beta"]), sigma_y=tuple(float(v) for v in p["sigma_y"]),
                sigma_y_global=float(p["sigma_y_global"]),
                frames_multiple=int(p["frames_multiple"]),
                lookahead_frames=int(p["lookahead_frames"]), raw=p,
                recommended=bool(p.get("recommended", False)),
                input_level=_input_level(p.get("input_level")),
                envelope=_envelope(p.get("envelope")),
            )
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"model card {folder / 'model_card.json'} is incomplete: {e}") from e
    return codec, post


def foreign_model_message(file_model_id: str, installed: CodecCard) -> str:
    """What to say when a stream was encoded by a model other than the loaded one: which
    model it needs, which flowdec release shipped that model (when the card remembers it),
    and how to decode with it."""
    shipped = {str(m.get("model_id")): m for m in installed.previous_models}
    old = shipped.get(file_model_id)
    loaded = f"the loaded model is {installed.model_id}"
    if installed.flowdec_version:
        loaded += f" (flowdec {installed.flowdec_version})"
    if old is not None and old.get("flowdec_version"):
        where = (f"a folder with that model's files, e.g. flowdec/models/{SHIPPED_MODEL} of a "
                 f"flowdec {old['flowdec_version']} installation")
        made = f"model {file_model_id} (shipped with flowdec {old['flowdec_version']})"
    else:
        where = "a folder with that model's files (flowdec info FILE names the model)"
        made = f"model {file_model_id}"
    return f"encoded with {made}, but {loaded}: decode it with --model DIR, DIR being {where}"

