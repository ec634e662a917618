"""The plain codec's output for a folder of reference clips, decoded once and kept on disk.

``decoded(clip_dir, bitrate, cache)`` returns ``(name, domain, reference, codec output)``
per ``<domain>_<n>.wav`` clip at 48 kHz mono, the codec used as ``flowdec decode
--no-postfilter`` uses it; decoded clips are written to ``cache/<bitrate>k/<name>.wav`` and
read back on later calls (delete the folder after changing the model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from flowdec.audio import resample
from flowdec.codec import Codec


def decoded(clip_dir: Path, bitrate: float, cache: Path, threads: int = 1
            ) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    files = sorted(Path(clip_dir).glob("*.wav"))
    if not files:
        raise SystemExit(f"{clip_dir}: no .wav clips (a folder of <domain>_<n>.wav)")
    out_dir = Path(cache) / f"{bitrate:g}k"
    codec: Codec | None = None
    clips = []
    for f in files:
        x, sr = sf.read(f, dtype="float32", always_2d=True)
        x = resample(x.T, sr, 48000)[0]
        y_path = out_dir / f.name
        if y_path.is_file():
            y = sf.read(y_path, dtype="float32")[0]
        else:
            codec = codec or Codec(threads=threads)
            y = codec.decode(codec.encode(x, 48000, bitrate), postfilter=False)
            y = np.asarray(y, np.float32).reshape(-1)
            out_dir.mkdir(parents=True, exist_ok=True)
            sf.write(y_path, y, 48000, subtype="FLOAT")
        clips.append((f.stem, f.stem.split("_")[0], x, y[: len(x)]))
    return clips
