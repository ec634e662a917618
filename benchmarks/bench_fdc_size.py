"""Bytes on disk of a coded 10 s mono clip against the nominal bitrate: the file default
(8 s packets, level gains per second), shorter packets, the live packet layout (0.2 s packets,
gains per 40 ms) and the file default with 24 band gains. The clip is the bundled example,
repeated to 10 s; the real encoder writes the files (ceil(T / hop) + 1 = 751 frames).
Prints a table and writes JSON (bench_out/fdc_size.json); docs/bitstream.md quotes it.

    python benchmarks/bench_fdc_size.py [-b 3 4.5 6 7.5]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
from pedalboard.io import AudioFile

from flowdec.audio import CODEC_RATE
from flowdec.codec import Codec, example_clip
from flowdec.format.bitstream import (
    FILE_FRAMES_PER_GAIN,
    FILE_LEVEL_BANDS,
    LIVE_FRAMES_PER_GAIN,
    LIVE_FRAMES_PER_PACKET,
    write_fdc,
)
from results import save

SECONDS = 10.0
LAYOUTS = {  # name: (frames per packet, frames per gain, level bands)
    "file default (8 s packets, gains/1 s)": (600, FILE_FRAMES_PER_GAIN, 0),
    "4 s packets, gains/1 s": (300, FILE_FRAMES_PER_GAIN, 0),
    "live (0.2 s packets, gains/40 ms)": (LIVE_FRAMES_PER_PACKET, LIVE_FRAMES_PER_GAIN, 0),
    "file default + 24 band gains": (600, FILE_FRAMES_PER_GAIN, FILE_LEVEL_BANDS),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-b", "--bitrates", type=float, nargs="+", default=[3.0, 4.5, 6.0, 7.5])
    p.add_argument("--out", type=Path, default=Path("bench_out/fdc_size.json"))
    args = p.parse_args()
    codec = Codec(threads=1)
    with AudioFile(str(example_clip())) as f:
        audio, rate = f.read(f.frames), f.samplerate
    mono = np.resize(audio.mean(axis=0), int(SECONDS * rate))[None]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kbps in args.bitrates:
            nominal = kbps * 1000 / 8 * SECONDS
            row: dict[str, object] = {"kbps": kbps, "payload_bytes": nominal}
            for name, (fpp, fpg, bands) in LAYOUTS.items():
                stream = codec.encode(mono, rate, kbps, frames_per_gain=fpg, level_bands=bands)
                header = dataclasses.replace(stream.header, frames_per_packet=fpp)
                path = Path(tmp) / "clip.fdc"
                write_fdc(path, header, stream.codes, stream.gains_db, stream.band_gains_db)
                size = path.stat().st_size
                row[name] = {"bytes": size, "overhead_pct": 100 * (size / nominal - 1),
                             "frames": int(stream.codes.shape[2])}
            rows.append(row)
    head = "| kbit/s | payload | " + " | ".join(LAYOUTS) + " |"
    print(head)
    print("|---" * (len(LAYOUTS) + 2) + "|")
    for row in rows:
        cells = [f"{row[n]['bytes']} B, +{row[n]['overhead_pct']:.2f} %"  # type: ignore[index]
                 for n in LAYOUTS]
        print(f"| {row['kbps']:g} | {row['payload_bytes']:.0f} B | " + " | ".join(cells) + " |")
    save(args.out, {"seconds": SECONDS, "channels": 1, "codec_rate": CODEC_RATE,
                    "clip": "example clip repeated", "rows": rows})


if __name__ == "__main__":
    main()
