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

from .envelope import Envelope

SHIPPED_MODEL = "flowdec-75"
STREAM_DECODER = "decoder_stream.onnx"
"""The streaming decoder; it holds no weights of its own but points into ``decoder.onnx``."""


class ModelError(RuntimeError):
    """A model folder is missing, incomplete or inconsistent."""


def models_root() -> Path:
    return Path(__file__).resolve().parent / "models"


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


def files_id(paths: list[Path]) -> str:
    """The model id stored in .fdc files: first 16 hex digits of SHA-256 over the files."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def has_streaming(folder: Path, model_id: str) -> bool:
    """Whether ``folder`` has the streaming decoder. It reads its weights from
    ``decoder.onnx`` by byte offset, so the plain files must be the ones the card's model id
    names: a folder whose files were replaced is refused, never run with misplaced weights."""
    if not (folder / STREAM_DECODER).is_file():
        return False
    got = files_id([folder / "encoder.onnx", folder / "decoder.onnx"])
    if got != model_id:
        raise ModelError(
            f"model folder {folder}: encoder.onnx and decoder.onnx are model {got}, but the "
            f"card says {model_id}; {STREAM_DECODER} points into the original decoder.onnx: "
            "restore the files, or re-export the model (python -m flowdec.train.export codec)")
    return True


@dataclass(frozen=True)
class CodecCard:
    """The codec section of a model card (all times in samples at ``sample_rate``)."""

    model_id: str
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
    # improves on the plain codec (absent: yes). See flowdec.train.export.add_evaluation.
    recommended: bool = True
    # The level the network was trained at: inputs are presented at this peak level by a
    # peak follower with one frame of look-ahead (flowdec.level.PeakNormalizer); None
    # (absent): as they come.
    input_level: InputLevel | None = None
    # The output's band envelope is kept to the codec output's after the ODE solve
    # (flowdec.envelope); None (absent): the solver's output as it is.
    envelope: Envelope | None = None


@dataclass(frozen=True)
class InputLevel:
    """``input_level`` of a postfilter card (see :class:`flowdec.level.PeakNormalizer`)."""

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
    card = json.loads((folder / "model_card.json").read_text())
    try:
        c = card["codec"]
        m = c["config"]["model"]
        enc_p, enc_f = _block_reach(m["kernel"], m["enc_blocks"], m["enc_lookahead_blocks"])
        dec_p, dec_f = _block_reach(m["kernel"], m["dec_blocks"], m["dec_lookahead_blocks"])
        codec = CodecCard(
            model_id=str(card["model_id"]),
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
                recommended=bool(p.get("recommended", True)),
                input_level=_input_level(p.get("input_level")),
                envelope=_envelope(p.get("envelope")),
            )
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"model card {folder / 'model_card.json'} is incomplete: {e}") from e
    return codec, post
