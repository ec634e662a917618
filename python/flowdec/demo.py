"""``flowdec demo``: round-trip the bundled example clip (the README's main job).

    flowdec demo -o example_roundtrip.wav [-b 6 --postfilter --nfe 6 --seed 0]

The clip is 6 s of CC0 music (stereo, 44.1 kHz; see ``flowdec/data/LICENSE-example.md``).
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .cli import nfe_seed_options, postfilter_option

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
    from .cli import load_codec, progress_arg, say
    from .codec import example_clip
    from .files import roundtrip_file

    codec = load_codec(args)
    r = roundtrip_file(codec, example_clip(), args.output, bitrate=args.bitrate, nfe=args.nfe,
                       seed=args.seed, postfilter=args.postfilter, progress=progress_arg(args))
    say(args, f"example clip: {example_clip().name} (CC0, see flowdec/data/LICENSE-example.md)")
    say(args, r.summary())
    return 0
