"""``flowdec eval``: code a folder of clips through FlowDec and baselines, score, tabulate.

For every clip (any format pedalboard.io reads; resampled to 48 kHz, channels kept, metrics
on the mono downmix) and every bitrate ``b`` (kbit/s per channel):

- ``ndac``: the codec alone (postfilter off);
- ``flowdec-nfeN``: codec + postfilter, midpoint solver, per-band σ_y, for each N in ``nfes``;
- with ``ablations``: ``flowdec-nfe6-euler`` (Euler solver), ``flowdec-nfe6-global``
  (one global σ_y instead of the per-band curve) and, for a card with an envelope stage,
  ``flowdec-nfe6-noenv`` (the solver's output without the codec output's band envelope,
  :mod:`flowdec.dsp.envelope`);
- with ``level_bands`` (e.g. ``(24,)``): ``ndac-bandsB`` and ``flowdec-nfeN-bandsB``, the
  same with B band gains in the bitstream (:mod:`flowdec.dsp.band_level`);
- ``opus``: opusenc at ``b`` and at ``2b`` kbit/s (hard CBR, see :mod:`.opus`).

"actual kbit/s" of the codec settings counts the level and band gains too (per channel).

Paired per-clip comparisons (:func:`comparison_pairs`, :mod:`.paired`): wherever two codec
settings differ in one thing, B against A on the same clips, per domain and per-clip metric:
mean of B − A, its bootstrap 95 % interval, and on how many clips B is better —

- ``postfilter``: ``flowdec-nfeN`` vs ``ndac`` (same bitrate and band gains);
- ``ablation``: ``flowdec-nfe6-euler`` / ``-global`` / ``-noenv`` vs ``flowdec-nfe6``;
- ``band gains``: ``…-bandsB`` vs the same setting without band gains;
- ``bitrate``: each setting at one bitrate vs the same setting at the next lower one.

Outputs in ``out_dir``: ``clips.csv`` (one row per clip × setting), ``summary.json``
(per-setting, per-domain means, FAD, real-time factors, which metrics were missing, the
paired comparisons), ``results_<domain>.md`` (the table and the paired comparisons; one
per domain and ``all``, only ``all`` when every clip has the same domain) and
``audio/<clip>/<setting>.wav`` for the report bitrate.

A clip's domain comes from its name's prefix: ``music_``, ``speech_``, ``sound_``; other
names get ``EvalConfig.domain`` (``--domain``; default ``other``). PESQ and STOI score
speech clips only.

Real-time factor (RTF) = wall-clock seconds / audio seconds for encode + decode (lower is
faster; 0.1 = ten times faster than real time), on the machine and threads used.

Example:
    >>> from flowdec.codec import Codec
    >>> cfg = EvalConfig(bitrates=(6.0,), nfes=(6,))
    >>> summary = run_eval(Codec.load(), "clips/", "eval_out/", cfg)   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..audio import CODEC_RATE, resample
from ..codec import Codec
from . import metrics as M
from . import paired as P
from .opus import opus_roundtrip, opus_version
from .report import SETTINGS_NOTE, missing_metrics, table_domains

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
DOMAINS = ("music", "speech", "sound")


@dataclass
class EvalConfig:
    """What ``run_eval`` runs. Bitrates in kbit/s per channel; NFE = network evaluations."""

    bitrates: Sequence[float] = (3.0, 4.5, 6.0, 7.5)
    nfes: Sequence[int] = (2, 4, 6, 10)
    baselines: Sequence[str] = ("opus",)
    ablations: bool = False
    seed: int = 0
    metrics: Sequence[str] = M.ALL_METRICS
    opus_mode: str = "cbr"
    report_bitrate: float | None = None   # audio saved for this bitrate (default: nearest 6)
    max_seconds: float | None = None      # crop clips (None: whole clips)
    level_bands: Sequence[int] = ()       # also code with these band-gain settings
    domain: str = "other"                 # domain of clips without a known name prefix


@dataclass(frozen=True)
class Setting:
    """One way of coding a clip."""

    system: str            # "ndac" | "flowdec" | "opus"
    bitrate: float         # requested kbit/s per channel
    nfe: int = 0
    solver: str = ""
    sigma: str = ""
    envelope: bool = True
    level_bands: int = 0

    @property
    def name(self) -> str:
        bands = f"-bands{self.level_bands}" if self.level_bands else ""
        if self.system == "flowdec":
            tail = ("-euler" if self.solver == "euler" else "") + (
                "-global" if self.sigma == "global" else "") + (
                "" if self.envelope else "-noenv")
            return f"flowdec-nfe{self.nfe}{tail}{bands}"
        return self.system + bands

    @property
    def key(self) -> str:
        return f"{self.name}@{self.bitrate:g}"


@dataclass
class Clip:
    name: str
    domain: str
    audio: np.ndarray      # [channels, samples] at 48 kHz
    path: Path

    @property
    def seconds(self) -> float:
        return float(self.audio.shape[1] / CODEC_RATE)


def domain_of(name: str, default: str = "other") -> str:
    """``"music_a" -> "music"``; names without a known ``<domain>_`` prefix get ``default``."""
    head = name.split("_", 1)[0].lower()
    return head if head in DOMAINS and "_" in name else default


def list_clips(ref_dir: str | Path) -> list[Path]:
    """Audio files under ``ref_dir`` (recursively), sorted."""
    root = Path(ref_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder of reference clips")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS
                   and p.is_file() and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return files


def load_clip(path: Path, max_seconds: float | None = None, domain: str = "other") -> Clip:
    """A clip at 48 kHz; ``domain``: for a name without a known prefix."""
    from pedalboard.io import AudioFile

    with AudioFile(str(path)) as f:
        rate = int(f.samplerate)
        frames = f.frames if max_seconds is None else min(f.frames, int(max_seconds * rate))
        audio = np.asarray(f.read(frames), np.float32)
    audio = resample(audio, rate, CODEC_RATE)
    return Clip(path.stem, domain_of(path.stem, domain), audio, path)


def settings_for(codec: Codec, cfg: EvalConfig) -> list[Setting]:
    out: list[Setting] = []
    opus_rates: list[float] = []
    for b in cfg.bitrates:
        out.append(Setting("ndac", b))
        if codec.has_postfilter:
            out += [Setting("flowdec", b, n, "midpoint", "band") for n in cfg.nfes]
            if cfg.ablations:
                out += [Setting("flowdec", b, 6, "euler", "band"),
                        Setting("flowdec", b, 6, "midpoint", "global")]
                post = codec.post_card
                if post is not None and post.envelope is not None:
                    out.append(Setting("flowdec", b, 6, "midpoint", "band", envelope=False))
        for bands in cfg.level_bands:
            out.append(Setting("ndac", b, level_bands=bands))
            if codec.has_postfilter:
                out += [Setting("flowdec", b, n, "midpoint", "band", level_bands=bands)
                        for n in cfg.nfes]
        opus_rates += [b, 2 * b]
    if "opus" in cfg.baselines:
        out += [Setting("opus", r) for r in sorted(set(opus_rates))]
    return out


def comparison_pairs(settings: Sequence[Setting]) -> list[tuple[str, Setting, Setting]]:
    """``(kind, A, B)`` for every pair of codec settings (not Opus) that differ in one thing
    and are both in ``settings``; B is scored against A (see the module docstring).

    Example:
        >>> s = [Setting("ndac", 6.0), Setting("flowdec", 6.0, 6, "midpoint", "band")]
        >>> [(k, a.key, b.key) for k, a, b in comparison_pairs(s)]
        [('postfilter', 'ndac@6', 'flowdec-nfe6@6')]
    """
    have = set(settings)
    codec = [s for s in settings if s.system in ("ndac", "flowdec")]
    out: list[tuple[str, Setting, Setting]] = []
    for kind in ("postfilter", "ablation", "band gains"):
        for s in codec:
            default = s.system == "flowdec" and (s.solver, s.sigma, s.envelope) == (
                "midpoint", "band", True)
            if kind == "postfilter" and default:
                base = Setting("ndac", s.bitrate, level_bands=s.level_bands)
            elif kind == "ablation" and s.system == "flowdec" and not default:
                base = replace(s, solver="midpoint", sigma="band", envelope=True)
            elif kind == "band gains" and s.level_bands:
                base = replace(s, level_bands=0)
            else:
                continue
            if base in have:
                out.append((kind, base, s))
    rates: dict[str, list[Setting]] = {}
    for s in codec:
        rates.setdefault(s.name, []).append(s)
    for same in rates.values():
        same.sort(key=lambda s: s.bitrate)
        out += [("bitrate", lo, hi) for lo, hi in zip(same, same[1:], strict=False)]
    return out


def _decode(codec: Codec, stream: Any, s: Setting, seed: int) -> np.ndarray:
    """Decode at 48 kHz with the setting's postfilter options."""
    if s.system == "ndac":
        return codec.decode(stream, postfilter=False)
    return codec.decode(stream, nfe=s.nfe, seed=seed, postfilter=True, solver_name=s.solver,
                        sigma=s.sigma, envelope=s.envelope)


def _write_wav(path: Path, audio: np.ndarray) -> None:
    from scipy.io import wavfile

    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.round(audio.T * 32767.0), -32768, 32767).astype(np.int16)
    wavfile.write(path, CODEC_RATE, pcm)


@dataclass
class _Acc:
    rows: list[dict[str, Any]] = field(default_factory=list)
    emb_ref: dict[str, np.ndarray] = field(default_factory=dict)
    emb: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def run_eval(codec: Codec, ref_dir: str | Path, out_dir: str | Path,
             cfg: EvalConfig | None = None, progress: bool | None = None,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the evaluation and write its outputs; returns the summary (also ``summary.json``).

    Missing optional metric packages are listed in ``summary["metrics"]`` and skipped; a
    missing ``opusenc`` raises :class:`~flowdec.evaluation.opus.OpusNotFound` before any work
    (drop ``"opus"`` from ``baselines`` to run without it).
    """
    cfg = cfg or EvalConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    avail = M.availability()
    use = [m for m in cfg.metrics if avail.get(m, "").startswith("ok")]
    unknown = [m for m in cfg.metrics if m not in M.ALL_METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(M.ALL_METRICS)}")
    opus_ver = opus_version() if "opus" in cfg.baselines else None
    if "opus" in cfg.baselines and opus_ver is None:
        opus_roundtrip(np.zeros(10, np.float32), CODEC_RATE, 6.0)  # raises OpusNotFound
    for b in cfg.bitrates:
        codec.card.codebooks_for(b)  # refuse unknown bitrates early
    paths = list_clips(ref_dir)
    settings = settings_for(codec, cfg)
    report_b = cfg.report_bitrate if cfg.report_bitrate is not None else min(
        cfg.bitrates, key=lambda b: abs(b - 6.0))
    acc = _Acc()
    from tqdm import tqdm

    show = progress if progress is not None else None
    bar = tqdm(total=len(paths) * len(settings), desc="eval", unit="setting",
               disable=(show is False) or (show is None and not _isatty()))
    try:
        for path in paths:
            clip = load_clip(path, cfg.max_seconds, cfg.domain)
            _eval_clip(codec, clip, settings, cfg, use, report_b, out, acc, bar)
    finally:
        bar.close()
    summary = _summarise(codec, cfg, settings, use, avail, opus_ver, report_b, acc, paths)
    _write_outputs(out, acc.rows, summary, use)
    if log:
        for m in cfg.metrics:
            if not avail.get(m, "").startswith("ok"):
                log(f"{m}: {avail.get(m)}")
        speech_only = [m for m in use if m in M.SPEECH_ONLY]
        if speech_only and "speech" not in summary["domains"]:
            log(f"{' and '.join(speech_only)} score speech clips only and none is speech: name "
                "them speech_*.wav or pass --domain speech")
    return summary


def _isatty() -> bool:
    import sys

    return sys.stderr.isatty()


def _eval_clip(codec: Codec, clip: Clip, settings: list[Setting], cfg: EvalConfig,
               use: list[str], report_b: float, out: Path, acc: _Acc, bar: Any) -> None:
    ref = clip.audio
    speech = clip.domain == "speech"
    if "fad" in use:
        acc.emb_ref[clip.name] = M.aisfx_embeddings(ref)
    _write_wav(out / "audio" / clip.name / "reference.wav", ref)
    streams: dict[tuple[float, int], tuple[Any, float]] = {}
    for s in settings:
        bar.set_postfix_str(f"{clip.name} {s.key}")
        t0 = time.perf_counter()
        kbps = s.bitrate
        if s.system == "opus":
            r = opus_roundtrip(ref, CODEC_RATE, s.bitrate * ref.shape[0], cfg.opus_mode)
            y, wall, kbps = r.audio, r.wall_seconds, r.kbps / ref.shape[0]
        else:
            how = (s.bitrate, s.level_bands)
            if how not in streams:
                stream = codec.encode(ref, CODEC_RATE, s.bitrate, level_bands=s.level_bands)
                streams[how] = (stream, time.perf_counter() - t0)
            stream, enc_wall = streams[how]
            h = stream.header
            side_bits = h.gain_blocks(h.total_frames) * (8 + 4 * h.level_bands)
            kbps = s.bitrate + side_bits / clip.seconds / 1000
            t1 = time.perf_counter()
            y = _decode(codec, stream, s, cfg.seed)
            wall = enc_wall + time.perf_counter() - t1
        row: dict[str, Any] = {
            "clip": clip.name, "domain": clip.domain, "setting": s.name, "system": s.system,
            "bitrate_kbps": s.bitrate, "actual_kbps": round(kbps, 3), "nfe": s.nfe,
            "solver": s.solver, "sigma": s.sigma, "envelope": s.envelope,
            "level_bands": s.level_bands,
            "seconds": round(clip.seconds, 3),
            "rtf": wall / clip.seconds,
        }
        row.update(M.score(ref, y, use, speech))
        acc.rows.append(row)
        acc.wall[s.key] = acc.wall.get(s.key, 0.0) + wall
        acc.seconds[s.key] = acc.seconds.get(s.key, 0.0) + clip.seconds
        if "fad" in use:
            acc.emb.setdefault(s.key, {})[clip.name] = M.aisfx_embeddings(y)
        if abs(s.bitrate - report_b) < 1e-9:
            _write_wav(out / "audio" / clip.name / f"{s.name}.wav", y)
        bar.update(1)


def _mean(values: list[float]) -> float | None:
    v = [x for x in values if x is not None and not math.isnan(x)]
    return float(np.mean(v)) if v else None


def _summarise(codec: Codec, cfg: EvalConfig, settings: list[Setting], use: list[str],
               avail: dict[str, str], opus_ver: str | None, report_b: float, acc: _Acc,
               paths: list[Path]) -> dict[str, Any]:
    domains = sorted({r["domain"] for r in acc.rows})
    clip_domain = {r["clip"]: r["domain"] for r in acc.rows}
    out_settings = []
    for s in settings:
        rows = [r for r in acc.rows if r["setting"] == s.name and r["bitrate_kbps"] == s.bitrate]
        per: dict[str, dict[str, Any]] = {}
        for d in [*domains, "all"]:
            dr = [r for r in rows if d == "all" or r["domain"] == d]
            entry: dict[str, Any] = {"clips": len(dr)}
            for m in use:
                if m == "fad":
                    names = [r["clip"] for r in dr]
                    if names and s.key in acc.emb:
                        entry["fad"] = M.frechet_distance(
                            np.concatenate([acc.emb_ref[n] for n in names]),
                            np.concatenate([acc.emb[s.key][n] for n in names]))
                    continue
                entry[m] = _mean([r.get(m, math.nan) for r in dr])
            entry["actual_kbps"] = _mean([r["actual_kbps"] for r in dr])
            per[d] = entry
        out_settings.append({
            **asdict(s), "name": s.name, "key": s.key,
            "rtf": acc.wall.get(s.key, 0.0) / max(acc.seconds.get(s.key, 0.0), 1e-9),
            "domains": per,
        })
    return {
        "flowdec_version": __version__,
        "model_id": codec.model_id,
        "model_folder": str(codec.folder),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": codec.threads,
        "opus": opus_ver,
        "metrics": avail,
        "metrics_used": use,
        "config": {k: (list(v) if isinstance(v, tuple | list) else v)
                   for k, v in asdict(cfg).items()},
        "report_bitrate": report_b,
        "clips": [{"name": p.stem,
                   "domain": clip_domain.get(p.stem, domain_of(p.stem, cfg.domain)),
                   "file": str(p)} for p in paths],
        "domains": domains,
        "settings": out_settings,
        "paired": {"diff": "B - A", "resamples": P.RESAMPLES, "level": P.LEVEL,
                   "seed": P.SEED, "metrics": [m for m in use if m in M.CLIP_METRICS]},
        "comparisons": _comparisons(settings, use, domains, acc.rows),
    }


def _comparisons(settings: list[Setting], use: list[str], domains: list[str],
                 rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Paired per-clip comparisons (:func:`comparison_pairs`) for the JSON summary."""
    by_key: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault(f"{r['setting']}@{r['bitrate_kbps']:g}", {})[r["clip"]] = r
    metrics = [m for m in use if m in M.CLIP_METRICS]
    out = []
    for kind, a, b in comparison_pairs(settings):
        ra, rb = by_key.get(a.key, {}), by_key.get(b.key, {})
        clips = [c for c in ra if c in rb]
        per: dict[str, dict[str, Any]] = {}
        for d in [*domains, "all"]:
            dc = [c for c in clips if d == "all" or ra[c]["domain"] == d]
            per[d] = {}
            for m in metrics:
                res = P.paired_comparison([ra[c].get(m) for c in dc], [rb[c].get(m) for c in dc],
                                          M.HIGHER_IS_BETTER[m])
                if res is not None:
                    per[d][m] = asdict(res)
        out.append({"kind": kind, "a": a.key, "b": b.key, "domains": per})
    return out


def markdown_table(summary: dict[str, Any], domain: str) -> str:
    """A Markdown table of one domain: one row per setting, metric means, FAD, RTF."""
    use = summary["metrics_used"]
    arrows = {m: ("↑" if M.HIGHER_IS_BETTER[m] else "↓") for m in use}
    head = ["setting", "kbit/s", "actual kbit/s", *[f"{m} {arrows[m]}" for m in use], "RTF"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary["settings"]:
        e = s["domains"].get(domain)
        if not e or not e["clips"]:
            continue
        cells = [s["name"], f"{s['bitrate']:g}", M.format_value(e.get("actual_kbps")),
                 *[M.format_value(e.get(m)) for m in use], f"{s['rtf']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_markdown(summary: dict[str, Any], domain: str) -> str:
    """The paired per-clip comparisons of one domain as Markdown ("" when there are none)."""
    head, rows = P.paired_rows(summary, domain)
    if not rows:
        return ""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
             *["| " + " | ".join(r) + " |" for r in rows]]
    return (f"## Paired per-clip comparisons\n\n{P.TABLE_NOTE}\n\n" + "\n".join(lines) + "\n")


def _write_outputs(out: Path, rows: list[dict[str, Any]], summary: dict[str, Any],
                   use: list[str]) -> None:
    cols = ["clip", "domain", "setting", "system", "bitrate_kbps", "actual_kbps", "nfe",
            "solver", "sigma", "envelope", "seconds", "rtf", *[m for m in use if m != "fad"]]
    with open(out / "clips.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False,
                                                 default=_json_default) + "\n")
    missing = [f"- {m}: {st}" for m, st in missing_metrics(summary).items()]
    for d in table_domains(summary):
        paired = paired_markdown(summary, d)
        title = d if len(summary["domains"]) != 1 else f"{d} ({summary['domains'][0]})"
        text = (f"# {title}: {summary['model_id']}\n\n" + markdown_table(summary, d)
                + f"\n{SETTINGS_NOTE}\n"
                + ("\n" + paired if paired else "")
                + ("\nMissing metrics:\n" + "\n".join(missing) + "\n" if missing else ""))
        (out / f"results_{d}.md").write_text(text)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")
