"""A compact shard of an audio cache: crops of its clips in one FLAC file, for training away.

A training machine reached through a size-limited transfer (e.g. 64 MiB of files per call,
code and weights included; docs/gpu-training.md) cannot take the 11 h cache. A shard takes
seeded crops of the cache's clips, about as many seconds for every domain, skipping mostly
silent crops (the training sampler's −55 dBFS rule), and stores them losslessly as one mono
16-bit FLAC file with an :class:`AudioCache` index (about 19 minutes of audio in 48 MB).
``AudioCache(shard)`` reads it like any cache; each crop keeps its source clip's path,
domain and split, and its start there (``start``, in samples).

Example:
    python -m flowdec.train.shard --cache CACHE --out shard --megabytes 44
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import numpy as np

from .data import SAMPLE_RATE, AudioCache, mostly_quiet


def _flac_bytes(q: np.ndarray) -> bytes:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, q, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def choose_crops(cache: AudioCache, split: str, budget_bytes: float, crop_seconds: float,
                 seed: int, per_domain: int | None = None, max_tries: int = 100_000
                 ) -> list[tuple[int, int, np.ndarray]]:
    """Crops ``(clip, start, int16 samples)`` of ``split``, each from the domain with the
    fewest seconds so far, until their FLAC sizes add up to ``budget_bytes``
    or each domain has ``per_domain`` crops. A clip shorter than ``crop_seconds`` is taken
    whole; no crop is taken twice."""
    rng = np.random.default_rng(seed)
    n = int(round(crop_seconds * SAMPLE_RATE))
    by_domain: dict[str, list[int]] = {}
    for i, c in enumerate(cache.index):
        if c["split"] == split:
            by_domain.setdefault(c["domain"], []).append(i)
    if not by_domain:
        raise ValueError(f"the cache has no clips in split {split!r}")
    members = {d: np.asarray(v) for d, v in sorted(by_domain.items())}
    weights = {d: cache.lengths[v] / cache.lengths[v].sum() for d, v in members.items()}
    used = 0
    count = {d: 0 for d in members}
    samples = {d: 0 for d in members}
    taken: set[tuple[int, int]] = set()
    crops: list[tuple[int, int, np.ndarray]] = []
    open_domains = set(members)
    for _ in range(max_tries):
        if not open_domains:
            break
        d = min(sorted(open_domains), key=lambda k: samples[k])  # the domain furthest behind
        i = int(rng.choice(members[d], p=weights[d]))
        length = int(cache.lengths[i])
        start = int(rng.integers(0, max(length - n, 0) + 1))
        if (i, start) in taken:
            continue
        o = int(cache.offsets[i]) + start
        q = np.array(cache.audio[o : o + min(n, length)], dtype=np.int16)
        if mostly_quiet(q.astype(np.float32) / 32768.0):
            continue
        size = len(_flac_bytes(q))
        if used + size > budget_bytes:
            open_domains.discard(d)
            continue
        taken.add((i, start))
        used += size
        count[d] += 1
        samples[d] += q.size
        crops.append((i, start, q))
        if per_domain is not None and count[d] >= per_domain:
            open_domains.discard(d)
    return crops


def write_shard(cache: AudioCache, out: str | os.PathLike[str], megabytes: float,
                crop_seconds: float = 4.0, valid_crops: int = 4, seed: int = 0) -> Path:
    """Write a shard of ``cache`` to the folder ``out``: ``valid_crops`` crops per domain of
    the ``valid`` split (when the cache has one: the training's validation), then crops of the
    ``train`` split up to ``megabytes`` MB of FLAC in all."""
    if not megabytes > 0 or not crop_seconds > 0 or valid_crops < 0:
        raise ValueError("a shard needs megabytes > 0, crop_seconds > 0 and valid_crops >= 0")
    budget = megabytes * 1e6
    crops = []
    if valid_crops and any(c["split"] == "valid" for c in cache.index):
        crops = choose_crops(cache, "valid", budget, crop_seconds, seed + 1, valid_crops)
    budget -= sum(len(_flac_bytes(q)) for *_, q in crops)
    crops += choose_crops(cache, "train", budget, crop_seconds, seed)
    # one FLAC stream of all crops is a little larger than the crops' own FLAC sizes (frames
    # straddle crop boundaries): drop the last crops until it fits
    while crops:
        flac = _flac_bytes(np.concatenate([q for *_, q in crops]))
        over = len(flac) - megabytes * 1e6
        if over <= 0:
            break
        mean = len(flac) / len(crops)
        crops = crops[: len(crops) - max(1, int(np.ceil(over / mean)))]
    if not crops:
        raise ValueError(f"no crop fits in {megabytes} MB: raise --megabytes")
    index, offset = [], 0
    for i, start, q in crops:
        c = cache.index[i]
        index.append({"path": c["path"], "start": start, "domain": c["domain"],
                      "split": c["split"], "offset": offset, "length": int(q.size)})
        offset += q.size
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    part = f".{os.getpid()}.part"  # complete files appear under their names, index last
    (folder / ("audio.flac" + part)).write_bytes(flac)
    os.replace(folder / ("audio.flac" + part), folder / "audio.flac")
    (folder / ("index.json" + part)).write_text(json.dumps(index))
    os.replace(folder / ("index.json" + part), folder / "index.json")
    return folder


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cache", required=True, help="audio cache folder (flowdec.train.data)")
    p.add_argument("--out", required=True, help="shard folder to write")
    p.add_argument("--megabytes", type=float, required=True, help="size limit of the FLAC file")
    p.add_argument("--crop-seconds", type=float, default=4.0, help="crop length (default 4)")
    p.add_argument("--valid-crops", type=int, default=4,
                   help="validation crops per domain (default 4: what the training validates on)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        folder = write_shard(AudioCache(args.cache), args.out, args.megabytes, args.crop_seconds,
                             args.valid_crops, args.seed)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    shard = AudioCache(folder)
    size = (folder / "audio.flac").stat().st_size / 1e6
    minutes = ", ".join(f"{k} {h * 60:.1f} min" for k, h in sorted(shard.hours().items()))
    print(f"{folder}: {len(shard.index)} crops, {size:.1f} MB ({minutes})")


if __name__ == "__main__":
    main()
