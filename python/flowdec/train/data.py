"""Training data: scan folders of audio → manifest → int16 cache → seeded, domain-balanced crops.

Layout understood by :func:`scan`: a ``manifest.csv`` with columns ``file, domain, split,
seconds`` (what ``scripts/prepare_training_data.sh`` writes), or else any folder tree whose
top-level folder names the domain (``music/``, ``speech/``, ``sound/``; anything else is
domain ``other``); the split is then ``valid`` for ~2 % of files chosen by a hash of the path.

Example:
    >>> clips = scan("/data/flowdec_train")                       # doctest: +SKIP
    >>> cache = AudioCache.build(clips, "/data/cache")            # doctest: +SKIP
    >>> batch = CropSampler(cache, "train", seconds=1.0, seed=0).batch(16)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 48000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".m4a", ".opus")
DOMAINS = ("music", "speech", "sound")


@dataclass(frozen=True)
class Clip:
    path: str
    domain: str
    split: str
    seconds: float


def _split_for(rel: str) -> str:
    return "valid" if int(hashlib.sha1(rel.encode()).hexdigest(), 16) % 50 == 0 else "train"


def scan(root: str | os.PathLike[str]) -> list[Clip]:
    """List the clips under ``root`` (see the module docstring for the layouts understood)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"training data folder {root} does not exist")
    manifest = root / "manifest.csv"
    clips: list[Clip] = []
    if manifest.exists():
        with open(manifest, newline="") as fh:
            for row in csv.DictReader(fh):
                path = str(root / row["file"])
                clips.append(Clip(path, row["domain"], row["split"], float(row["seconds"])))
        return clips
    from pedalboard.io import AudioFile

    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if not name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            top = rel.split("/", 1)[0] if "/" in rel else ""
            domain = top if top in DOMAINS else "other"
            with AudioFile(str(path)) as f:
                seconds = f.frames / f.samplerate
            clips.append(Clip(str(path), domain, _split_for(rel), seconds))
    if not clips:
        raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}")
    return clips


def read_mono_48k(path: str) -> np.ndarray:
    """Decode a file to float32 mono at 48 kHz (mean of channels; resampled if needed)."""
    from pedalboard.io import AudioFile

    with AudioFile(path) as f:
        g = f.resampled_to(SAMPLE_RATE) if f.samplerate != SAMPLE_RATE else f
        audio = g.read(g.frames)
    return np.asarray(audio.mean(0), dtype=np.float32)


class AudioCache:
    """All clips decoded once into one int16 file (memory-mapped) plus a JSON index.

    A compact cache (a shard, :mod:`flowdec.train.shard`) holds the same samples as one mono
    16-bit FLAC file, ``audio.flac``, instead of ``audio.int16``; it is decoded into memory.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        folder = Path(folder)
        with open(folder / "index.json") as fh:
            self.index = json.load(fh)
        self.audio: np.ndarray
        if (folder / "audio.int16").exists() or not (folder / "audio.flac").exists():
            self.audio = np.memmap(folder / "audio.int16", dtype=np.int16, mode="r")
        else:
            import soundfile

            self.audio = soundfile.read(folder / "audio.flac", dtype="int16")[0]
        self.offsets = np.array([c["offset"] for c in self.index], dtype=np.int64)
        self.lengths = np.array([c["length"] for c in self.index], dtype=np.int64)

    @classmethod
    def build(
        cls, clips: Iterable[Clip], folder: str | os.PathLike[str], progress: bool = True
    ) -> AudioCache:
        folder = Path(folder)
        if (folder / "index.json").exists():
            return cls(folder)
        folder.mkdir(parents=True, exist_ok=True)
        clips = list(clips)
        index = []
        offset = 0
        tmp = folder / "audio.int16.part"
        from tqdm import tqdm

        with open(tmp, "wb") as out:
            for clip in tqdm(clips, desc="caching audio", disable=not progress, unit="file"):
                x = read_mono_48k(clip.path)
                q = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
                out.write(q.tobytes())
                index.append(
                    {"path": clip.path, "domain": clip.domain, "split": clip.split,
                     "offset": offset, "length": int(q.size)}
                )
                offset += q.size
        os.replace(tmp, folder / "audio.int16")
        with open(folder / "index.json.part", "w") as fh:
            json.dump(index, fh)
        os.replace(folder / "index.json.part", folder / "index.json")
        return cls(folder)

    @classmethod
    def from_arrays(
        cls, clips: list[tuple[np.ndarray, str, str]], folder: str | os.PathLike[str]
    ) -> AudioCache:
        """Cache in-memory float clips [(audio, domain, split)] (used for synthetic data)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        index, offset = [], 0
        part = f".{os.getpid()}.part"  # complete files appear under their names, index last
        with open(folder / ("audio.int16" + part), "wb") as out:
            for i, (x, domain, split) in enumerate(clips):
                q = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
                out.write(q.tobytes())
                index.append({"path": f"synthetic/{i}", "domain": domain, "split": split,
                              "offset": offset, "length": int(q.size)})
                offset += q.size
        os.replace(folder / ("audio.int16" + part), folder / "audio.int16")
        with open(folder / ("index.json" + part), "w") as fh:
            json.dump(index, fh)
        os.replace(folder / ("index.json" + part), folder / "index.json")
        return cls(folder)

    def clip(self, i: int) -> np.ndarray:
        o, n = self.offsets[i], self.lengths[i]
        return np.asarray(self.audio[o : o + n], dtype=np.float32) / 32768.0

    def hours(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in self.index:
            key = f"{c['domain']}/{c['split']}"
            out[key] = out.get(key, 0.0) + c["length"] / SAMPLE_RATE / 3600
        return out


QUIET_DBFS = -55.0
"""A crop is skipped when at least half of its 20 ms frames are below this level."""


def mostly_quiet(x: np.ndarray) -> bool:
    """At least half of ``x``'s whole 20 ms frames (48 kHz) below :data:`QUIET_DBFS` (or none)."""
    fr = np.asarray(x, np.float32)[: x.size // 960 * 960].reshape(-1, 960)
    return fr.size == 0 or float(np.mean(np.mean(fr * fr, 1) < 10 ** (QUIET_DBFS / 10))) >= 0.5


class CropSampler:
    """Seeded random crops, balanced over domains, with gain ±6 dB and random polarity.

    Crops whose 20 ms frames are mostly below −55 dBFS are skipped (up to 20 retries).
    """

    def __init__(
        self,
        cache: AudioCache,
        split: str,
        seconds: float,
        seed: int,
        augment: bool = True,
        domains: Iterable[str] | None = None,
    ) -> None:
        self.cache = cache
        self.n = int(round(seconds * SAMPLE_RATE))
        self.rng = np.random.default_rng(seed)
        self.augment = augment
        by_domain: dict[str, list[int]] = {}
        for i, c in enumerate(cache.index):
            if c["split"] == split and (domains is None or c["domain"] in set(domains)):
                by_domain.setdefault(c["domain"], []).append(i)
        if not by_domain:
            raise ValueError(f"no clips in split {split!r}")
        self.domains = sorted(by_domain)
        self.members = {d: np.array(v) for d, v in by_domain.items()}
        self.weights = {
            d: cache.lengths[v].astype(np.float64) / cache.lengths[v].sum()
            for d, v in self.members.items()
        }

    def crop(self, domain: str | None = None) -> tuple[np.ndarray, str]:
        d = domain or self.domains[self.rng.integers(len(self.domains))]
        x = np.zeros(self.n, np.float32)
        for _ in range(20):
            i = int(self.rng.choice(self.members[d], p=self.weights[d]))
            length = int(self.cache.lengths[i])
            start = int(self.rng.integers(0, max(length - self.n, 0) + 1))
            o = int(self.cache.offsets[i]) + start
            seg = np.asarray(self.cache.audio[o : o + min(self.n, length)], np.float32) / 32768.0
            x = np.zeros(self.n, np.float32)
            x[: seg.size] = seg
            if not mostly_quiet(x):
                break
        if self.augment:
            x *= 10 ** (self.rng.uniform(-6, 6) / 20) * (1 if self.rng.random() < 0.5 else -1)
            peak = np.abs(x).max()
            if peak > 0.99:
                x *= 0.99 / peak
        return x, d

    def batch(self, size: int) -> np.ndarray:
        return np.stack([self.crop()[0] for _ in range(size)])


def synthetic_clips(n: int, seconds: float, seed: int) -> list[tuple[np.ndarray, str, str]]:
    """Sines with harmonics ("music"), noise bursts ("sound"), chirps ("speech"), for tests/CI."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    out = []
    for i in range(n):
        kind = DOMAINS[i % 3]
        if kind == "music":
            f0 = rng.uniform(80, 800)
            x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 6))
            x = x * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        elif kind == "sound":
            x = rng.standard_normal(t.size) * (np.sin(2 * np.pi * rng.uniform(1, 5) * t) > 0)
        else:
            f0, f1 = rng.uniform(100, 300), rng.uniform(300, 3000)
            x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds)))
        x = 0.3 * x / (np.abs(x).max() + 1e-9)
        out.append((x.astype(np.float32), kind, "valid" if i % 5 == 4 else "train"))
    return out


def describe(root: str | os.PathLike[str]) -> dict[str, object]:
    """Hours per domain/split, files and packages of a training folder (for model cards)."""
    hours: dict[str, float] = {}
    files: dict[str, int] = {}
    for c in scan(root):
        key = f"{c.domain}/{c.split}"
        hours[key] = hours.get(key, 0.0) + c.seconds / 3600
        files[c.domain] = files.get(c.domain, 0) + 1
    return {
        "recipe": "scripts/prepare_training_data.sh (default settings): real 48 kHz audio "
                  "from pinned Debian 12 packages, mono, -23 LUFS, silence trimmed; ~2 % "
                  "validation split by file hash",
        "hours": {k: round(v, 2) for k, v in sorted(hours.items())},
        "files": files,
        "sampling": "domains equally weighted (music / speech / sound), random crops, gain "
                    "±6 dB, random polarity; mostly-silent crops skipped",
        "licences": "DFSG-free, often copyleft (GPL, CC-BY-SA); the manifest lists package, "
                    "version and source path of every file; no training audio is shipped",
    }


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m flowdec.train.data DATA_DIR   (prints a JSON summary)")
    print(json.dumps(describe(sys.argv[1]), indent=1))
