"""Static HTML listening report for an evaluation folder (no server; open ``index.html``).

:func:`write_report` reads what :func:`~flowdec.evaluation.runner.run_eval` wrote
(``summary.json``, ``audio/<clip>/<setting>.wav``) and adds, in the same folder:

- ``plots/rate_<metric>.png``: rate–quality curves (metric vs the actual kbit/s per
  channel, one panel per domain, one line per system: Opus, NDAC, FlowDec at each NFE);
- ``plots/spec_<clip>_<setting>.png``: log-magnitude spectrograms (2048-sample Hann, 0–24 kHz,
  dB relative to the reference's peak) of every saved audio file;
- ``index.html``: the tables per domain, the paired per-clip comparisons per domain
  (:mod:`.paired`), the curves, and per clip an ``<audio>`` player and
  spectrogram for reference / Opus / NDAC / FlowDec (at the report bitrate).

All paths in the page are relative, so the folder can be zipped and moved.

Example:
    >>> write_report("eval_out")           # doctest: +SKIP
    PosixPath('eval_out/index.html')
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import HIGHER_IS_BETTER, format_value, stft_magnitude
from .paired import TABLE_NOTE, paired_rows

PLAYER_ORDER = ("reference", "opus", "ndac", "flowdec")
SPEC_WINDOW = 2048
SPEC_FLOOR_DB = -100.0
SETTINGS_NOTE = ("ndac: the codec alone (postfilter off); flowdec-nfeN: the codec plus the "
                 "postfilter with N network evaluations; -bandsB: with B band gains in the "
                 "bitstream; opus: opusenc at that bitrate. kbit/s: asked for, per channel; "
                 "actual kbit/s: what the bitstream took (level and band gains included).")
"""What the setting names and rate columns in tables and reports mean."""


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    from scipy.io import wavfile

    rate, data = wavfile.read(path)
    a = np.asarray(data, np.float32)
    if np.asarray(data).dtype == np.int16:
        a = a / 32768.0
    return (a if a.ndim == 1 else a.mean(axis=1)), int(rate)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def spectrogram_png(audio: np.ndarray, rate: int, path: Path, title: str,
                    ref_peak_db: float | None = None) -> float:
    """Save a spectrogram PNG; returns the peak level (dB) used as 0 dB of the colour scale."""
    plt = _plt()
    mag = stft_magnitude(audio.astype(np.float64), SPEC_WINDOW, SPEC_WINDOW // 4)
    db = 20 * np.log10(np.maximum(mag, 1e-10))
    peak = float(db.max()) if ref_peak_db is None else ref_peak_db
    fig, ax = plt.subplots(figsize=(4.2, 2.4), dpi=80)
    secs = audio.size / rate
    ax.imshow(db - peak, origin="lower", aspect="auto", cmap="magma", vmin=SPEC_FLOOR_DB, vmax=0,
              extent=(0.0, secs, 0.0, rate / 2000))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("s", fontsize=8)
    ax.set_ylabel("kHz", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return peak


def table_domains(summary: dict[str, Any]) -> list[str]:
    """The domains that get a table, a curve panel and a ``results_<domain>.md``: each domain
    and ``all``, or only ``all`` when every clip has one domain (the same numbers twice)."""
    domains = list(summary["domains"])
    return [*domains, "all"] if len(domains) > 1 else ["all"]


def missing_metrics(summary: dict[str, Any]) -> dict[str, str]:
    """``{metric: why}`` for the metrics asked for (``config.metrics``) that did not run."""
    asked = summary.get("config", {}).get("metrics", list(summary["metrics"]))
    return {m: st for m, st in summary["metrics"].items()
            if m in asked and not st.startswith("ok")}


def rate_points(summary: dict[str, Any], metric: str, domain: str
                ) -> dict[str, list[tuple[float, float]]]:
    """``{setting name: [(actual kbit/s per channel, metric mean), ...]}`` sorted by rate: the
    curve points of one domain (Opus "3" sits where it really ran, e.g. 4.84)."""
    lines: dict[str, list[tuple[float, float]]] = {}
    for s in summary["settings"]:
        e = s["domains"].get(domain, {})
        v = e.get(metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        rate = e.get("actual_kbps")
        lines.setdefault(s["name"], []).append(
            (float(rate) if rate is not None else float(s["bitrate"]), float(v)))
    return {name: sorted(pts) for name, pts in lines.items()}


def rate_quality_png(summary: dict[str, Any], metric: str, path: Path) -> bool:
    """Metric vs actual kbit/s per channel per system (:func:`rate_points`), a panel per
    domain (:func:`table_domains`). False if nothing to plot."""
    plt = _plt()
    domains = table_domains(summary)
    fig, axes = plt.subplots(1, len(domains), figsize=(3.2 * len(domains), 2.8), dpi=80,
                             squeeze=False)
    plotted = False
    for ax, d in zip(axes[0], domains, strict=True):
        for name, pts in sorted(rate_points(summary, metric, d).items()):
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if len(pts) > 1 else "o",
                    label=name, markersize=4)
            plotted = True
        ax.set_title(d, fontsize=9)
        ax.set_xlabel("actual kbit/s per channel", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    arrow = "higher is better" if HIGHER_IS_BETTER.get(metric, True) else "lower is better"
    axes[0][0].set_ylabel(f"{metric} ({arrow})", fontsize=8)
    if plotted:
        axes[0][-1].legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(path)
    plt.close(fig)
    return plotted


def _table_html(summary: dict[str, Any], domain: str) -> str:
    use = summary["metrics_used"]
    head = ["setting", "kbit/s", "actual kbit/s",
            *[f"{m} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in use], "RTF"]
    rows = []
    for s in summary["settings"]:
        e = s["domains"].get(domain)
        if not e or not e["clips"]:
            continue
        cells = [s["name"], f"{s['bitrate']:g}", format_value(e.get("actual_kbps")),
                 *[format_value(e.get(m)) for m in use], f"{s['rtf']:.3f}"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _paired_html(summary: dict[str, Any], domain: str) -> str:
    head, rows = paired_rows(summary, domain)
    if not rows:
        return ""
    return (f"<h3>{html.escape(domain)}</h3><table><thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                      for r in rows) + "</tbody></table>")


def _players(clip_dir: Path) -> list[tuple[str, Path]]:
    """(label, wav) in the order reference, opus, ndac, flowdec-* (sorted)."""
    files = {p.stem: p for p in clip_dir.glob("*.wav")}

    def rank(name: str) -> tuple[int, str]:
        for i, head in enumerate(PLAYER_ORDER):
            if name.startswith(head):
                return i, name
        return len(PLAYER_ORDER), name

    return [(n, files[n]) for n in sorted(files, key=rank)]


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.cell{border:1px solid #ddd;padding:6px;border-radius:4px;width:340px}
.cell h4{margin:0 0 4px;font-size:13px}
.cell img{width:336px;display:block}
.cell audio{width:336px}
.curves img{max-width:100%}
.note{color:#666;font-size:13px}
"""


def write_report(out_dir: str | Path, title: str = "FlowDec evaluation") -> Path:
    """Render plots and ``index.html`` into ``out_dir``; returns the path of ``index.html``."""
    out = Path(out_dir)
    summary = json.loads((out / "summary.json").read_text())
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class=\"note\">model {html.escape(str(summary['model_id']))}, flowdec "
             f"{html.escape(str(summary['flowdec_version']))}, Opus: "
             f"{html.escape(str(summary.get('opus') or 'not run'))}; players and spectrograms "
             f"at {summary['report_bitrate']:g} kbit/s. RTF = wall time / audio time "
             f"(encode + decode).</p>"]
    missing = missing_metrics(summary)
    if missing:
        parts.append("<p class=\"note\">Missing metrics: " + "; ".join(
            f"{html.escape(m)}: {html.escape(s)}" for m, s in missing.items()) + "</p>")
    parts.append("<h2>Results per domain</h2>")
    for d in table_domains(summary):
        parts.append(f"<h3>{html.escape(d)}</h3>" + _table_html(summary, d))
    parts.append(f"<p class=\"note\">{html.escape(SETTINGS_NOTE)}</p>")
    paired = [_paired_html(summary, d) for d in table_domains(summary)]
    if any(paired):
        parts.append("<h2>Paired per-clip comparisons</h2>"
                     f"<p class=\"note\">{html.escape(TABLE_NOTE)}</p>" + "".join(paired))
    parts.append("<h2>Rate–quality curves</h2><div class=\"curves\">")
    for m in summary["metrics_used"]:
        png = plots / f"rate_{m}.png"
        if rate_quality_png(summary, m, png):
            parts.append(f"<img src=\"plots/{png.name}\" alt=\"{html.escape(m)} vs bitrate\">")
    parts.append("</div><h2>Listening</h2>")
    for clip in summary["clips"]:
        name = clip["name"]
        clip_dir = out / "audio" / name
        if not clip_dir.is_dir():
            continue
        parts.append(f"<h3>{html.escape(name)} <span class=\"note\">({html.escape(clip['domain'])}"
                     f")</span></h3><div class=\"grid\">")
        peak: float | None = None
        for label, wav in _players(clip_dir):
            audio, rate = _read_wav(wav)
            png = plots / f"spec_{name}_{label}.png"
            p = spectrogram_png(audio, rate, png, f"{name}: {label}", peak)
            if label == "reference":
                peak = p
            rel_wav = html.escape(wav.relative_to(out).as_posix())
            alt = html.escape(f"spectrogram {label}")
            parts.append(
                f"<div class=\"cell\"><h4>{html.escape(label)}</h4>"
                f"<audio controls preload=\"none\" src=\"{rel_wav}\"></audio>"
                f"<img src=\"plots/{html.escape(png.name)}\" alt=\"{alt}\">"
                "</div>")
        parts.append("</div>")
    parts.append("</body></html>\n")
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index
