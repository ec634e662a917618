"""The file verbs: encode, decode, roundtrip, bounce, enhance and info, each one call into
:mod:`flowdec.files` and one summary line."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .common import (
    MODEL_ENV,
    bitrate_option,
    chunk_option,
    decode_options,
    load_codec,
    postfilter_request,
    progress_arg,
    say,
    solver_options,
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register encode, decode, roundtrip, bounce, enhance and info."""
    p = subparsers.add_parser("encode", help="audio file -> .fdc bitstream",
                              description="Encode an audio file (wav, flac, ogg, mp3, aiff; "
                                          "any rate and channel count) to a .fdc file.")
    p.add_argument("input", type=Path, help="audio file")
    p.add_argument("output", type=Path, help="the .fdc file to write")
    bitrate_option(p)
    chunk_option(p)
    p.set_defaults(func=_encode)

    p = subparsers.add_parser("decode", help=".fdc bitstream -> audio file",
                              description="Decode a .fdc file to audio at its original rate, "
                                          "channels and length; the format follows the "
                                          "extension (.wav float32, .flac 24-bit, .ogg, .mp3).")
    p.add_argument("input", type=Path, help=".fdc file")
    p.add_argument("output", type=Path, help="audio file to write")
    decode_options(p)
    chunk_option(p)
    p.set_defaults(func=_decode)

    p = subparsers.add_parser("roundtrip", help="audio -> codec -> audio, no .fdc file",
                              description="Encode and decode an audio file in one go (what a "
                                          "listener hears at that bitrate).")
    p.add_argument("input", type=Path, help="audio file")
    p.add_argument("output", type=Path, help="audio file to write")
    bitrate_option(p)
    decode_options(p)
    chunk_option(p)
    p.set_defaults(func=_roundtrip)

    p = subparsers.add_parser("bounce", help="round-trip files and folders into a folder",
                              description="Round-trip audio files and whole folders "
                                          "(recursively) into OUT_DIR, keeping the folder tree. "
                                          "A failing file is reported and skipped.")
    p.add_argument("inputs", type=Path, nargs="+", metavar="IN", help="audio files or folders")
    p.add_argument("-o", "--out-dir", type=Path, required=True, help="destination folder")
    p.add_argument("--format", default="wav", choices=("wav", "flac", "ogg", "mp3", "aiff"),
                   help="output format (default wav, 32-bit float)")
    bitrate_option(p)
    decode_options(p)
    chunk_option(p)
    p.set_defaults(func=_bounce)

    p = subparsers.add_parser("enhance", help="the postfilter alone on decoded audio",
                              description="Run the flow-matching postfilter on an audio file "
                                          "the codec decoded without it (flowdec decode "
                                          "--no-postfilter, or another program); rate, "
                                          "channels and length are kept.")
    p.add_argument("input", type=Path, help="decoded audio file")
    p.add_argument("output", type=Path, help="audio file to write")
    solver_options(p, asks=False)
    chunk_option(p)
    p.set_defaults(func=_enhance)

    p = subparsers.add_parser("info", help="describe .fdc files",
                              description="Header fields, duration, bitrate, packets, file size "
                                          "and model of .fdc files (and whether that model is "
                                          "the installed one).")
    p.add_argument("files", type=Path, nargs="+", metavar="FILE", help=".fdc files")
    p.set_defaults(func=_info)


def _decode_kw(args: argparse.Namespace) -> dict[str, Any]:
    return {"nfe": args.nfe, "seed": args.seed, "postfilter": postfilter_request(args),
            "solver": args.solver or "midpoint", "chunk_seconds": args.chunk_seconds,
            "progress": progress_arg(args)}


def _encode(args: argparse.Namespace) -> int:
    from ..files import encode_file

    r = encode_file(load_codec(args), args.input, args.output, bitrate=args.bitrate,
                    chunk_seconds=args.chunk_seconds, progress=progress_arg(args),
                    level_bands=args.level_bands)
    say(args, r.summary())
    return 0


def _decode(args: argparse.Namespace) -> int:
    from ..files import decode_file

    r = decode_file(load_codec(args), args.input, args.output, **_decode_kw(args))
    say(args, r.summary())
    return 0


def _roundtrip(args: argparse.Namespace) -> int:
    from ..files import roundtrip_file

    r = roundtrip_file(load_codec(args), args.input, args.output, bitrate=args.bitrate,
                       level_bands=args.level_bands, **_decode_kw(args))
    say(args, r.summary())
    return 0


def _bounce(args: argparse.Namespace) -> int:
    from ..files import bounce

    r = bounce(load_codec(args), args.inputs, args.out_dir, bitrate=args.bitrate,
               suffix="." + args.format, on_result=lambda res: say(args, res.summary()),
               level_bands=args.level_bands, **_decode_kw(args))
    say(args, r.summary())
    return 1 if r.failures else 0


def _enhance(args: argparse.Namespace) -> int:
    from ..errors import FlowdecError
    from ..files import enhance_file
    from ..model.files import ModelError
    from ..model.sessions import DeviceError
    from ..postfilter import Postfilter

    try:
        pf = Postfilter(args.model or os.environ.get(MODEL_ENV) or None, args.device,
                        args.threads)
    except (ModelError, DeviceError) as e:
        raise FlowdecError(str(e)) from None
    r = enhance_file(pf, args.input, args.output, nfe=args.nfe, seed=args.seed,
                     solver=args.solver or "midpoint", chunk_seconds=args.chunk_seconds,
                     progress=progress_arg(args))
    say(args, r.summary())
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..files import stream_info

    status = 0
    model = args.model or os.environ.get(MODEL_ENV) or None
    for i, f in enumerate(args.files):
        info = stream_info(f, model)
        if i:
            print()
        print("\n".join(info.lines()))
        if info.problem:
            status = 1
    return status
