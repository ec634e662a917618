"""The non-adversarial codec (NDAC): spectral encoder → residual VQ → spectral decoder.

Shapes: audio [B, T] with T a multiple of ``hop`` (640 samples); latents [B, C, K] with
K = T / hop frames at 75 frames/s; codes [B, n_q, K] (int64, values < codebook_size).

Time structure (bounded, so streaming with enough context reproduces offline output):
frame k's analysis window covers samples [hop·(k−1), hop·(k+1)); every ConvNeXt block has a
depthwise kernel of ``kernel`` frames, causal except the first ``*_lookahead_blocks`` blocks
of each side, which see one future frame; the decoder's segment k covers the same span as the
encoder's window and is overlap-added, so output hop k also uses segment k+1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import CodecConfig, CodecRun


def hann_periodic(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * k / n)).float()


def dft_angles(win: int, device: torch.device | None = None) -> torch.Tensor:
    """2π·(f·n mod win)/win for f < win/2+1, n < win, exact in integer arithmetic, [F, win].

    Computed in the forward pass (not stored) so the exported ONNX files stay small.
    """
    f = torch.arange(win // 2 + 1, device=device)[:, None]
    n = torch.arange(win, device=device)[None, :]
    return torch.remainder(f * n, win).float() * (2 * math.pi / win)


class FrameAnalysis(nn.Module):
    """Windowed DFT of 2·hop-sample frames at hop ``hop``, as a strided convolution.

    [B, T] → [B, 2·(win/2+1), T/hop]: real parts then imaginary parts, amplitude-compressed
    (|X|^0.3 with the phase kept) so loud and quiet content get similar scale.
    """

    def __init__(self, hop: int, win: int) -> None:
        super().__init__()
        self.hop, self.win = hop, win
        self.n_freq = win // 2 + 1

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        ang = dft_angles(self.win, audio.device)
        w = hann_periodic(self.win).to(audio.device)
        basis = torch.cat([torch.cos(ang) * w, -torch.sin(ang) * w], 0)[:, None, :]
        x = F.pad(audio[:, None, :], (self.win - self.hop, 0))
        spec = F.conv1d(x, basis, stride=self.hop)  # [B, 2F, K]
        re, im = spec[:, : self.n_freq], spec[:, self.n_freq :]
        mag2 = re * re + im * im + 1e-12
        gain = mag2 ** ((0.3 - 1.0) / 2)  # |X|^0.3 / |X|
        return torch.cat([re * gain, im * gain], 1)


class FrameSynthesis(nn.Module):
    """Inverse of the frame layout: per-frame spectra → windowed segments → overlap-add.

    Input [B, 2F, K] (real, imaginary); output [B, K·hop]. Segment k covers samples
    [hop·(k−1), hop·(k+1)); a periodic Hann window at 50 % overlap sums to one.
    """

    def __init__(self, hop: int, win: int) -> None:
        super().__init__()
        assert win == 2 * hop, "overlap-add below assumes 50 % overlap"
        self.hop, self.win = hop, win
        self.n_freq = win // 2 + 1

    def inverse_basis(self, device: torch.device) -> torch.Tensor:
        ang = dft_angles(self.win, device)
        scale = torch.full((self.n_freq, 1), 2.0 / self.win, device=device)
        scale[0] = 1.0 / self.win
        scale[-1] = 1.0 / self.win
        w = hann_periodic(self.win).to(device)
        return torch.cat([torch.cos(ang) * scale, -torch.sin(ang) * scale], 0) * w  # [2F, win]

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        seg = torch.einsum("bck,cn->bkn", spec, self.inverse_basis(spec.device))  # [B, K, win]
        first, second = seg[..., : self.hop], seg[..., self.hop :]
        # output hop k = second half of segment k + first half of segment k+1
        nxt = F.pad(first[:, 1:], (0, 0, 0, 1))
        return (second + nxt).reshape(spec.shape[0], -1)


class ChannelNorm(nn.Module):
    """LayerNorm over channels of [B, C, K], per frame (no statistics over time)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class ConvNeXtBlock(nn.Module):
    """Depthwise temporal conv (``lookahead`` future frames) → LayerNorm → MLP, residual."""

    def __init__(self, dim: int, kernel: int, lookahead: int, mlp_ratio: int) -> None:
        super().__init__()
        self.pad = (kernel - 1 - lookahead, lookahead)
        self.dw = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.norm = ChannelNorm(dim)
        self.pw1 = nn.Conv1d(dim, dim * mlp_ratio, 1)
        self.pw2 = nn.Conv1d(dim * mlp_ratio, dim, 1)
        self.scale = nn.Parameter(torch.full((1, dim, 1), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dw(F.pad(x, self.pad))
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + self.scale * h


def trunk(cfg: CodecConfig, n_blocks: int, lookahead_blocks: int) -> nn.Sequential:
    return nn.Sequential(
        *[
            ConvNeXtBlock(cfg.dim, cfg.kernel, 1 if i < lookahead_blocks else 0, cfg.mlp_ratio)
            for i in range(n_blocks)
        ]
    )


class Encoder(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.analysis = FrameAnalysis(cfg.hop, cfg.win)
        self.proj = nn.Conv1d(2 * self.analysis.n_freq, cfg.dim, 1)
        self.blocks = trunk(cfg, cfg.enc_blocks, cfg.enc_lookahead_blocks)
        self.norm = ChannelNorm(cfg.dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.proj(self.analysis(audio))))


class Decoder(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.blocks = trunk(cfg, cfg.dec_blocks, cfg.dec_lookahead_blocks)
        self.norm = ChannelNorm(cfg.dim)
        n_freq = cfg.win // 2 + 1
        self.n_freq = n_freq
        self.head = nn.Conv1d(cfg.dim, 3 * n_freq, 1)  # log-magnitude, phase vector (x, y)
        self.synthesis = FrameSynthesis(cfg.hop, cfg.win)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        h = self.head(self.norm(self.blocks(latent)))
        logmag, px, py = torch.split(h, self.n_freq, 1)
        mag = torch.exp(torch.clamp(logmag, max=6.0))
        inv = torch.rsqrt(px * px + py * py + 1e-8)
        spec = torch.cat([mag * px * inv, mag * py * inv], 1)
        return self.synthesis(spec)


class ResidualVQ(nn.Module):
    """Residual VQ with factorised (low-dimensional), l2-normalised codes.

    Each level projects the residual to ``codebook_dim``, normalises, picks the codeword of
    highest cosine similarity and projects back. Usage is tracked per code for dead-code
    restarts.
    """

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.n_q, self.size, self.cdim = cfg.n_codebooks, cfg.codebook_size, cfg.codebook_dim
        self.in_proj = nn.ModuleList(nn.Conv1d(cfg.dim, self.cdim, 1) for _ in range(self.n_q))
        self.out_proj = nn.ModuleList(nn.Conv1d(self.cdim, cfg.dim, 1) for _ in range(self.n_q))
        self.codebooks = nn.Parameter(torch.randn(self.n_q, self.size, self.cdim))
        self.register_buffer("usage", torch.ones(self.n_q, self.size))

    def level_quantize(
        self, i: int, residual: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (quantized [B,C,K], codes [B,K], projected input e, codeword q) for level i."""
        e = F.normalize(self.in_proj[i](residual), dim=1)  # [B, d, K]
        cb = F.normalize(self.codebooks[i], dim=1)  # [N, d]
        sim = torch.einsum("bdk,nd->bkn", e, cb)
        codes = sim.argmax(-1)  # [B, K]
        q = cb[codes].permute(0, 2, 1)  # [B, d, K]
        q_st = e + (q - e).detach()
        return self.out_proj[i](q_st), codes, e, q

    def forward(
        self, z: torch.Tensor, n_active: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """z [B,C,K]; n_active [B] levels used per item (None = all).

        Returns (z_q, codes [B,n_q,K], commitment loss, codebook loss, per-level inputs e).
        """
        residual = z
        z_q = torch.zeros_like(z)
        codes, es = [], []
        commit = z.new_zeros(())
        cbl = z.new_zeros(())
        for i in range(self.n_q):
            zi, ci, e, q = self.level_quantize(i, residual)
            if n_active is None:
                mask = torch.ones_like(z[:, :1, :1])
            else:
                mask = (n_active > i).to(z.dtype)[:, None, None]
            z_q = z_q + zi * mask
            residual = residual - zi.detach() * mask
            m = mask.expand(-1, e.shape[1], e.shape[2])
            denom = m.sum().clamp(min=1.0)
            commit = commit + (((e - q.detach()) ** 2) * m).sum() / denom
            cbl = cbl + (((e.detach() - q) ** 2) * m).sum() / denom
            codes.append(ci)
            es.append(e.detach())
            if self.training:
                with torch.no_grad():
                    hist = torch.bincount(ci.flatten(), minlength=self.size).float()
                    self.usage[i].mul_(0.99).add_(hist, alpha=0.01)
        return z_q, torch.stack(codes, 1), commit, cbl, es

    @torch.no_grad()
    def restart_dead_codes(self, es: list[torch.Tensor], threshold: float = 0.01) -> int:
        """Replace rarely used codewords by random current inputs. Returns how many."""
        n = 0
        for i, e in enumerate(es):
            dead = (self.usage[i] < threshold).nonzero().flatten()
            if dead.numel() == 0:
                continue
            pool = e.permute(0, 2, 1).reshape(-1, self.cdim)
            pick = torch.randint(0, pool.shape[0], (dead.numel(),), device=pool.device)
            new = pool[pick] + 0.01 * torch.randn_like(pool[pick])
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.broadcast(new, 0)
            self.codebooks[i, dead] = new
            self.usage[i, dead] = 1.0
            n += dead.numel()
        return n

    def decode_table(self) -> torch.Tensor:
        """[n_q, size, C]: each codeword already projected back (the decoder's lookup table)."""
        rows = []
        for i in range(self.n_q):
            cb = F.normalize(self.codebooks[i], dim=1)  # [N, d]
            rows.append(self.out_proj[i](cb.T[None]).squeeze(0).T)  # [N, C]
        return torch.stack(rows, 0)


class Codec(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = ResidualVQ(cfg)
        self.decoder = Decoder(cfg)

    def forward(
        self, audio: torch.Tensor, n_active: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        z = self.encoder(audio)
        z_q, codes, commit, cbl, es = self.quantizer(z, n_active)
        y = self.decoder(z_q)
        return {"audio": y, "codes": codes, "commit": commit, "codebook": cbl, "inputs": es}


class ExportEncoder(nn.Module):
    """audio [B, T] (T multiple of hop) → codes [B, n_q, T/hop] int64."""

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.codec = codec

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        vq = self.codec.quantizer
        residual = self.codec.encoder(audio)
        codes = []
        for i in range(vq.n_q):
            zi, ci, _, _ = vq.level_quantize(i, residual)
            residual = residual - zi
            codes.append(ci)
        return torch.stack(codes, 1)


class ExportDecoder(nn.Module):
    """codes [B, n, K] int64 (the first n ≤ n_q levels) → audio [B, K·hop]."""

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.codec = codec
        self.size = codec.cfg.codebook_size

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        n = codes.shape[1]
        table = self.codec.quantizer.decode_table()  # [n_q, N, C], built in-graph (small file)
        table = table.reshape(-1, table.shape[-1])
        offs = (torch.arange(n, device=codes.device) * self.size)[None, :, None]
        emb = F.embedding(codes + offs, table)  # [B, n, K, C]
        latent = emb.sum(1).transpose(1, 2)
        return self.codec.decoder(latent)


class _StreamTrunk(nn.Module):
    """A trunk's blocks run on new frames only, each block's last ``kernel − 1`` input frames
    carried as state, so streaming costs the same per frame as one long run.

    Frame bookkeeping (everything per batch item): the input holds frames [first, first + N);
    a block with look-ahead r emits frames [first − r, first − r + N) (it needs frame k + r for
    frame k). Frames outside [0, end) are zeroed between blocks — exactly the zero padding the
    offline trunk sees before the first and after the last frame — so the output equals the
    offline trunk's for every frame in [0, end), however the frames are split into calls.
    """

    def __init__(self, blocks: nn.Sequential) -> None:
        super().__init__()
        self.blocks = blocks
        self.lookahead = [int(b.pad[1]) for b in blocks]
        self.history = int(blocks[0].dw.kernel_size[0]) - 1

    @property
    def delay(self) -> int:
        return sum(self.lookahead)

    def forward(self, h: torch.Tensor, first: torch.Tensor, end: torch.Tensor,
                state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h [B, C, N] frames [first, first + N) (first, end: [B] int64); state [B, blocks, C,
        kernel − 1] → (output [B, C, N] frames [first − delay, …), new state)."""
        n = h.shape[2]
        idx = first[:, None] + torch.arange(n, device=h.device)[None, :]  # [B, N]
        h = h * ((idx >= 0) & (idx < end[:, None])).to(h.dtype)[:, None, :]
        states = []
        for i, (blk, r) in enumerate(zip(self.blocks, self.lookahead, strict=True)):
            cat = torch.cat([state[:, i], h], 2)  # frames [f − history, f + N)
            states.append(cat[:, :, n:])
            d = blk.dw(cat)  # [B, C, N]: frame f + j − r from frames [.. − history, .. + r]
            x = cat[:, :, self.history - r : self.history - r + n]
            h = x + blk.scale * blk.pw2(F.gelu(blk.pw1(blk.norm(d))))
            idx = idx - r
            h = h * ((idx >= 0) & (idx < end[:, None])).to(h.dtype)[:, None, :]
        return h, torch.stack(states, 1)


class StreamDecoder(nn.Module):
    """Streaming decoder for export: (codes [B, n, N] of frames [first, first + N), first
    [B], end [B], trunk state, synthesis state [B, hop]) → (audio [B, N·hop] of hops
    [first − delay, …), new states), delay = the trunk's look-ahead + 1 (output hop k is
    completed by segment k + 1). Initial states are zeros."""

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.codec = codec
        self.size = codec.cfg.codebook_size
        self.trunk = _StreamTrunk(codec.decoder.blocks)

    def forward(self, codes: torch.Tensor, first: torch.Tensor, end: torch.Tensor,
                trunk_state: torch.Tensor, synthesis_state: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dec = self.codec.decoder
        n = codes.shape[1]
        table = self.codec.quantizer.decode_table()
        table = table.reshape(-1, table.shape[-1])
        offs = (torch.arange(n, device=codes.device) * self.size)[None, :, None]
        latent = F.embedding(codes + offs, table).sum(1).transpose(1, 2)  # [B, C, N]
        h, trunk_state = self.trunk(latent, first, end, trunk_state)
        out = dec.head(dec.norm(h))
        logmag, px, py = torch.split(out, dec.n_freq, 1)
        mag = torch.exp(torch.clamp(logmag, max=6.0))
        inv = torch.rsqrt(px * px + py * py + 1e-8)
        spec = torch.cat([mag * px * inv, mag * py * inv], 1)
        syn = dec.synthesis
        seg = torch.einsum("bck,cn->bkn", spec, syn.inverse_basis(spec.device))  # [B, N, win]
        idx = first[:, None] - self.trunk.delay + torch.arange(seg.shape[1], device=seg.device)
        seg = seg * ((idx >= 0) & (idx < end[:, None])).to(seg.dtype)[:, :, None]
        hop = syn.hop
        second = torch.cat([synthesis_state[:, None, :], seg[:, :-1, hop:]], 1)
        audio = (second + seg[:, :, :hop]).reshape(seg.shape[0], -1)
        return audio, trunk_state, seg[:, -1, hop:]


def load_codec(
    run_dir: str | os.PathLike[str], ema: bool = True, float16: bool = False
) -> tuple[Codec, CodecRun, dict[str, Any]]:
    """The codec of a run folder (its checkpoint's EMA or raw weights) or of a weights file
    (``--save-weights``: EMA weights in float16, loaded into a float32 model).

    ``float16``: round every weight to float16, as the exported ONNX files store them, so the
    model computes exactly what the exported one does."""
    path = Path(run_dir)
    weights_file = path.is_file()
    state = torch.load(path if weights_file else path / "checkpoint.pt", map_location="cpu",
                       weights_only=False)
    cfg = CodecRun.from_dict(state["config"])
    model = Codec(cfg.model)
    model.load_state_dict(state["state"] if weights_file else state["ema" if ema else "model"])
    if float16:
        with torch.no_grad():
            for t in model.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half().float())
    model.eval()
    info = {"steps": int(state["step"]), "wall_s": float(state.get("wall_s", 0.0))}
    return model, cfg, info


class StreamEncoder(nn.Module):
    """Streaming encoder for export: (audio [B, N·hop] = hops [first, first + N), first [B],
    end [B], analysis state [B, hop] (the hop before ``first``), trunk state [B, blocks,
    kernel − 1, C]) → (codes [B, n_q, N] of frames [first − delay, …), new states), delay =
    the trunk's look-ahead. Initial states are zeros (the offline encoder's left padding).

    Every matrix product has the frames as rows ([frames, in] × [in, out], the depthwise
    convolution as a fixed sum of shifted products), so each frame's arithmetic is the same
    whatever the number of frames in a call: the codes do not depend on how the audio is
    split into calls, bit for bit. (A convolution over time, as in :class:`ExportEncoder`,
    lets the runtime pick its summation blocking by the number of frames.)
    """

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.codec = codec
        enc = codec.encoder
        self.hop, self.win = enc.analysis.hop, enc.analysis.win
        self.n_freq = enc.analysis.n_freq
        self.lookahead = [int(b.pad[1]) for b in enc.blocks]
        self.history = int(enc.blocks[0].dw.kernel_size[0]) - 1

    @property
    def delay(self) -> int:
        return sum(self.lookahead)

    @staticmethod
    def _linear(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
        """A 1×1 convolution on [B, N, C_in] rows."""
        return F.linear(x, conv.weight.squeeze(-1), conv.bias)

    def _analysis(self, audio: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Frames [first, first + N) of :class:`FrameAnalysis`, as rows [B, N, 2F]."""
        ang = dft_angles(self.win, audio.device)
        w = hann_periodic(self.win).to(audio.device)
        basis = torch.cat([torch.cos(ang) * w, -torch.sin(ang) * w], 0)[:, None, :]
        hops = torch.cat([state, audio], 1).reshape(audio.shape[0], -1, self.hop)
        frames = torch.cat([hops[:, :-1], hops[:, 1:]], 2)  # [B, N, win]
        spec = torch.matmul(frames, basis[:, 0, :].transpose(0, 1))  # [B, N, 2F]
        re, im = spec[..., : self.n_freq], spec[..., self.n_freq :]
        mag2 = re * re + im * im + 1e-12
        gain = mag2 ** ((0.3 - 1.0) / 2)
        return torch.cat([re * gain, im * gain], 2)

    def forward(self, audio: torch.Tensor, first: torch.Tensor, end: torch.Tensor,
                analysis_state: torch.Tensor, trunk_state: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        enc, vq = self.codec.encoder, self.codec.quantizer
        h = self._linear(self._analysis(audio, analysis_state), enc.proj)  # [B, N, C]
        n = h.shape[1]
        idx = first[:, None] + torch.arange(n, device=h.device)[None, :]  # [B, N]
        h = h * ((idx >= 0) & (idx < end[:, None])).to(h.dtype)[:, :, None]
        hist = self.history
        states = []
        for i, (blk, r) in enumerate(zip(enc.blocks, self.lookahead, strict=True)):
            cat = torch.cat([trunk_state[:, i], h], 1)  # frames [f − history, f + N)
            states.append(cat[:, n:])
            taps = blk.dw.weight[:, 0, :]  # [C, kernel]
            d = cat[:, 0:n] * taps[:, 0]
            for j in range(1, hist + 1):
                d = d + cat[:, j : j + n] * taps[:, j]
            d = d + blk.dw.bias
            x = cat[:, hist - r : hist - r + n]
            u = self._linear(F.gelu(self._linear(blk.norm.norm(d), blk.pw1)), blk.pw2)
            h = x + blk.scale[0, :, 0] * u
            idx = idx - r
            h = h * ((idx >= 0) & (idx < end[:, None])).to(h.dtype)[:, :, None]
        residual = enc.norm.norm(h)
        codes = []
        for i in range(vq.n_q):
            e = F.normalize(self._linear(residual, vq.in_proj[i]), dim=2)  # [B, N, d]
            cb = F.normalize(vq.codebooks[i], dim=1)  # [size, d]
            c = torch.matmul(e, cb.transpose(0, 1)).argmax(-1)  # [B, N]
            q = F.embedding(c, cb)
            residual = residual - self._linear(e + (q - e), vq.out_proj[i])
            codes.append(c)
        return (torch.stack(codes, 1), audio[:, audio.shape[1] - self.hop :],
                torch.stack(states, 1))
