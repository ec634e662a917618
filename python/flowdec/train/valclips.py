"""Write a fixed set of held-out validation clips for evaluation and the model card.

    python -m flowdec.train.valclips --cache /data/cache --out /data/valclips [--per-domain 4]

Picks, deterministically (seeded), ``per_domain`` non-silent crops of ``seconds`` seconds from
the ``valid`` split of each domain and writes ``<domain>_<n>.wav`` (48 kHz mono float), the
names ``flowdec eval`` groups by (music_*, speech_*, sound_*). Clips within a domain are
distinct (a crop equal to an earlier one is drawn again), so no clip counts twice.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from pedalboard.io import AudioFile

from .data import SAMPLE_RATE, AudioCache, CropSampler

MAX_DRAWS = 100
"""Crops drawn per clip before giving up on finding one unlike the domain's earlier clips."""


def write_clips(cache: AudioCache, out: Path, per_domain: int, seconds: float, seed: int
                ) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    sampler = CropSampler(cache, "valid", seconds, seed=seed, augment=False)
    paths = []
    for domain in sampler.domains:
        seen: set[bytes] = set()
        for i in range(per_domain):
            for _ in range(MAX_DRAWS):  # a file shorter than the crop always gives the same one
                x, _ = sampler.crop(domain)
                key = hashlib.sha1(np.asarray(x, np.float32).tobytes()).digest()
                if key not in seen:
                    break
            else:
                raise ValueError(f"the {domain} validation split gave only {len(seen)} distinct "
                                 f"clips of {seconds:g} s in {MAX_DRAWS} draws; ask for fewer "
                                 "(--per-domain) or shorter ones (--seconds)")
            seen.add(key)
            p = out / f"{domain}_{i}.wav"
            with AudioFile(str(p), "w", SAMPLE_RATE, 1) as f:
                f.write(np.asarray(x, np.float32)[None])
            paths.append(p)
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cache", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--per-domain", type=int, default=4)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=2026)
    args = p.parse_args(argv)
    try:
        paths = write_clips(AudioCache(args.cache), Path(args.out), args.per_domain,
                            args.seconds, args.seed)
    except ValueError as e:
        raise SystemExit(f"valclips: {e}") from None
    print(f"wrote {len(paths)} clips to {args.out}")


if __name__ == "__main__":
    main()
