"""Model and training configuration for the codec (NDAC), saved inside every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CodecConfig:
    """Architecture of the non-adversarial codec (48 kHz mono, spectral-domain).

    Frames are 640 samples (75 frames/s). Each frame is analysed with a 1280-sample periodic
    Hann window covering the frame and the one before it; the decoder predicts a 1280-sample
    windowed segment per frame and overlap-adds at hop 640.
    """

    sample_rate: int = 48000
    hop: int = 640  # samples per codec frame (75 frames/s)
    win: int = 1280  # analysis / synthesis window (samples)
    dim: int = 256  # channels of the ConvNeXt trunk
    enc_blocks: int = 6
    dec_blocks: int = 8
    kernel: int = 5  # depthwise kernel (frames)
    enc_lookahead_blocks: int = 2  # first blocks see 1 future frame each
    dec_lookahead_blocks: int = 2
    mlp_ratio: int = 3
    n_codebooks: int = 10
    codebook_size: int = 1024  # 10 bits per code
    codebook_dim: int = 8  # factorised, l2-normalised code space
    bitrates_codebooks: tuple[int, ...] = (4, 6, 8, 10)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def lookahead_frames(self) -> int:
        """Codes → audio look-ahead in frames (encoder + decoder + synthesis overlap)."""
        return self.enc_lookahead_blocks + self.dec_lookahead_blocks + 1

    def bitrate_kbps(self, n_codebooks: int) -> float:
        bits = (self.codebook_size - 1).bit_length()
        return n_codebooks * bits * self.frame_rate / 1000.0


@dataclass
class LossConfig:
    mel_weight: float = 15.0
    mel_windows: tuple[int, ...] = (256, 512, 1024, 2048, 4096)
    mel_bands: tuple[int, ...] = (24, 48, 80, 128, 160)
    spec_weight: float = 1.0
    spec_windows: tuple[int, ...] = (8192,)  # long window: CQT-like resolution for music
    complex_weight: float = 0.0  # compressed complex STFT: phase coherence across frames
    complex_windows: tuple[int, ...] = ()
    wave_weight: float = 50.0
    commit_weight: float = 0.25
    codebook_weight: float = 1.0


@dataclass
class TrainConfig:
    crop_seconds: float = 1.0
    batch_size: int = 8
    lr: float = 6e-4
    lr_min: float = 1e-4
    warmup_steps: int = 500
    total_steps: int = 200_000
    betas: tuple[float, float] = (0.8, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    quantizer_dropout: float = 0.5
    dead_code_every: int = 200
    checkpoint_every_s: float = 300.0
    validate_every: int = 1000
    log_every: int = 25
    seed: int = 0
    threads: int = 2


@dataclass
class CodecRun:
    model: CodecConfig = field(default_factory=CodecConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CodecRun:
        def build(tp: Any, values: dict[str, Any]) -> Any:
            names = {f.name for f in dataclasses.fields(tp)}
            kw = {
                k: (tuple(v) if isinstance(v, list) else v)
                for k, v in values.items()
                if k in names
            }
            return tp(**kw)

        return cls(
            model=build(CodecConfig, d.get("model", {})),
            loss=build(LossConfig, d.get("loss", {})),
            train=build(TrainConfig, d.get("train", {})),
        )
