"""flowdec demo: round-trip the bundled example clip (the README's main job).

    flowdec demo -o example_roundtrip.wav [-b 6 --postfilter --nfe 6 --seed 0]

Encodes the clip to a .fdc file (in a temporary folder), prints its size and the bitrate it
really takes, then decodes it to the output. The clip is 6 s of CC0 music (stereo, 44.1 kHz;
see flowdec/data/LICENSE-example.md).
"""

from __future__ import annotations

import argparse

from .common import (
    load_codec,
    nfe_seed_options,
    postfilter_option,
    postfilter_request,
    progress_arg,
    say,
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("demo", help="round-trip the bundled example clip",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", default="example_roundtrip.wav",
                   help="where to write the decoded clip (default example_roundtrip.wav)")
    p.add_argument("-b", "--bitrate", type=float, default=6.0, metavar="KBPS",
                   help="kbit/s per channel (default 6)")
    nfe_seed_options(p)
    postfilter_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from ..codec import example_clip
    from ..files import decode_file, encode_file, stream_info

    codec = load_codec(args)
    say(args, f"example clip: {example_clip().name} (CC0, see flowdec/data/LICENSE-example.md)")
    with tempfile.TemporaryDirectory(prefix="flowdec-demo-") as tmp:
        fdc = Path(tmp) / "example.fdc"
        enc = encode_file(codec, example_clip(), fdc, bitrate=args.bitrate,
                          progress=progress_arg(args))
        info = stream_info(fdc, codec.folder)
        kbps = info.file_kbps
        say(args, f"encoded {example_clip().name} ({enc.seconds:.1f} s, {enc.channels} ch) -> "
                  f"{info.file_bytes / 1000:.1f} kB of .fdc = {kbps:.2f} kbit/s "
                  f"({kbps / enc.channels:.2f} per channel: {enc.bitrate:g} nominal + header "
                  f"and level gains), {enc.speed:.1f}x real time")
        r = decode_file(codec, fdc, args.output, nfe=args.nfe, seed=args.seed,
                        postfilter=postfilter_request(args), progress=progress_arg(args))
    post = f"postfilter nfe {r.nfe} seed {r.seed}" if r.postfilter else "no postfilter"
    say(args, f"decoded -> {r.output} ({r.sample_rate} Hz, {post}), {r.speed:.1f}x real time")
    return 0
