"""The ``flowdec live`` verb: a real-time round trip through :class:`flowdec.live.LiveSession`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..live import (
    DEFAULT_BLOCK,
    LIVE_THREADS,
    PLAIN_STATUS_INTERVAL,
    STATUS_INTERVAL,
    LiveError,
    LiveSession,
    LiveStatus,
    list_devices,
)
from ..stream import LIVE_NFE
from .common import load_codec, nfe_seed_options, postfilter_option, postfilter_request


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``flowdec live``."""
    p = subparsers.add_parser(
        "live", help="real-time round trip: microphone -> codec -> speakers",
        description="Microphone -> encoder -> .fdc packets -> decoder -> postfilter -> "
                    "speakers, in real time, with a status line (end-to-end latency, worker "
                    "real-time factor, bitrate on the wire, under-runs). A file can stand in "
                    "for either device. Ctrl-C stops cleanly (exit status 0).")
    p.add_argument("--list-devices", action="store_true", help="list sound devices and exit")
    p.add_argument("--input", metavar="DEV", help="input device: index or name substring "
                                                  "(default: the system default)")
    p.add_argument("--output", metavar="DEV", help="output device: index or name substring")
    p.add_argument("--input-file", type=Path, metavar="PATH",
                   help="read this audio file instead of a microphone, at real-time pace; the "
                        "session ends at its end plus the latency")
    p.add_argument("--output-file", type=Path, metavar="PATH",
                   help="write the decoded audio here instead of to speakers (wav/flac/...)")
    p.add_argument("--packets-file", type=Path, metavar="PATH.fdc",
                   help="also write the packets sent as a .fdc file")
    p.add_argument("-b", "--bitrate", type=float, default=6.0, metavar="KBPS",
                   help="kbit/s per channel (those the model card lists; default 6)")
    nfe_seed_options(p, default_nfe=LIVE_NFE)
    postfilter_option(p)
    p.add_argument("--chunk-ms", type=float, default=None, metavar="MS",
                   help="model chunk in ms, a multiple of 40 (default 40): longer = more "
                        "latency, less overhead per second with the postfilter")
    p.add_argument("--block", type=int, default=DEFAULT_BLOCK, metavar="N",
                   help=f"samples per audio callback (default {DEFAULT_BLOCK})")
    p.add_argument("--samplerate", type=int, default=None, metavar="HZ",
                   help="device rate (default: the input file's, else the device default, "
                        "else 48000)")
    p.add_argument("--channels", type=int, default=None,
                   help="channels (default: the input file's, else 1)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds of audio")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The ``live`` verb: 0 when the session ended (also by Ctrl-C), 1 on errors."""
    from ..errors import FlowdecError

    try:
        if args.list_devices:
            print(list_devices())
            return 0
        if args.threads is None:  # see LIVE_THREADS
            args.threads = LIVE_THREADS
        session = LiveSession(
            load_codec(args), input_device=args.input, output_device=args.output,
            input_file=args.input_file, output_file=args.output_file,
            packets_file=args.packets_file, bitrate=args.bitrate, nfe=args.nfe,
            postfilter=postfilter_request(args), seed=args.seed, chunk_ms=args.chunk_ms,
            sample_rate=args.samplerate, channels=args.channels, block=args.block,
            duration=args.duration)
    except (LiveError, ValueError) as e:
        raise FlowdecError(str(e)) from None
    quiet = bool(getattr(args, "quiet", False))
    tty = sys.stderr.isatty()
    if not quiet:
        src = str(args.input_file) if args.input_file else \
            f"device {session.in_info['name'] if session.in_info else '?'}"
        dst = str(args.output_file) if args.output_file else \
            f"device {session.out_info['name'] if session.out_info else '?'}"
        post = f"postfilter NFE {session.nfe}" if session.postfilter else "no postfilter"
        print(f"flowdec live: {src} -> {dst}, {session.sample_rate} Hz, {session.channels} ch, "
              f"{args.bitrate:g} kbit/s, {post}; Ctrl-C stops", file=sys.stderr, flush=True)

    def show(st: LiveStatus) -> None:
        if tty:
            print("\r" + st.line() + "\x1b[K", end="", file=sys.stderr, flush=True)
        else:
            print(st.line(), file=sys.stderr, flush=True)

    try:
        report = session.run(None if quiet else show,
                             STATUS_INTERVAL if tty else PLAIN_STATUS_INTERVAL)
    except LiveError as e:
        raise FlowdecError(str(e)) from None
    finally:
        if tty and not quiet:
            print(file=sys.stderr, flush=True)
    if not quiet:
        print(report.summary(), flush=True)
    return 0
