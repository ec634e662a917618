"""The ``flowdec`` command (also ``python -m flowdec``): thin verbs over :mod:`flowdec.files`.

    flowdec encode IN OUT.fdc -b 6
    flowdec decode IN.fdc OUT.wav [--postfilter|--no-postfilter --nfe 6 --seed S --solver euler]
    flowdec roundtrip IN OUT.wav -b 6 [--postfilter|--no-postfilter --nfe 6 --seed S]
    flowdec bounce IN... -o DIR [-b 6 ...]
    flowdec info FILE.fdc
    global: --model PATH --device cpu|cuda --threads N --quiet (before or after the verb)

No logic lives here: each verb parses its options, calls one library function and prints
its one-line summary. A :class:`~flowdec.files.FlowdecError` (or a refused stream, model or
device) is printed as ``flowdec: error: ...`` on stderr with exit status 1; usage errors
exit 2; Ctrl-C exits 130, SIGTERM 143 (outputs are written atomically, so no partial file is
left).

Adding a verb from another module (``live``, ``eval``, ``serve``, ...)::

    # python/flowdec/live.py
    def add_parser(subparsers: argparse._SubParsersAction) -> None:
        p = subparsers.add_parser("live", help="one line", description="...")
        p.add_argument("--block", type=int, default=480)
        p.set_defaults(func=run)

    def run(args: argparse.Namespace) -> int:      # returns the exit status
        codec = flowdec.cli.load_codec(args)       # honours --model/--device/--threads
        ...

and add ``"flowdec.live"`` to :data:`VERB_MODULES`. The global options are added to every
verb's parser automatically; import heavy modules inside ``run``, not at module level, so
that ``flowdec --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__

if TYPE_CHECKING:
    from .codec import Codec

VERB_MODULES: tuple[str, ...] = ("flowdec.cli",
                                 "flowdec.demo",
                                 "flowdec.serve",
                                 "flowdec.eval_cli",
                                 "flowdec.live")
"""Modules whose ``add_parser(subparsers)`` registers verbs, in ``--help`` order."""

MODEL_ENV = "FLOWDEC_MODEL"
"""Environment variable giving the default for ``--model``."""
DEFAULT_NFE, DEFAULT_SEED = 6, 0
"""Copies of :data:`flowdec.postfilter.DEFAULT_NFE` and ``DEFAULT_SEED`` for the help texts
(importing that module would slow ``--help``; a test keeps them equal)."""

_log = logging.getLogger("flowdec")


# -- shared helpers for verbs ----------------------------------------------------------------
def load_codec(args: argparse.Namespace) -> Codec:
    """The :class:`~flowdec.codec.Codec` selected by ``--model``, ``--device``, ``--threads``."""
    from .codec import Codec
    from .files import FlowdecError
    from .model_files import ModelError
    from .sessions import DeviceError

    try:
        return Codec(args.model or os.environ.get(MODEL_ENV) or None, args.device, args.threads)
    except (ModelError, DeviceError) as e:
        raise FlowdecError(str(e)) from None


def progress_arg(args: argparse.Namespace) -> bool | None:
    """``progress=`` for library calls: off with ``--quiet``, else automatic."""
    return False if args.quiet else None


def say(args: argparse.Namespace, line: str) -> None:
    """Print a result line on stdout unless ``--quiet``."""
    if not args.quiet:
        print(line, flush=True)


def _add_global_options(p: argparse.ArgumentParser, top: bool) -> None:
    # On verb parsers the defaults are SUPPRESSed so that a global option given before the
    # verb is not overwritten by the verb parser's default.
    def d(value: object) -> object:
        return value if top else argparse.SUPPRESS

    g = p.add_argument_group("global options")
    g.add_argument("--model", metavar="PATH", default=d(None),
                   help=f"model folder or shipped model name (default: ${MODEL_ENV}, else the "
                        "shipped model)")
    g.add_argument("--device", choices=("cpu", "cuda"), default=d("cpu"),
                   help="where the networks run (default: cpu)")
    g.add_argument("--threads", type=_positive_int, metavar="N", default=d(None),
                   help="CPU threads for inference (default: up to 4)")
    g.add_argument("--quiet", "-q", action="store_true", default=d(False),
                   help="no progress bar, no summary line (errors and warnings still print)")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


def _level_bands(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number 0..255, got {s!r}") from None
    if not 0 <= v <= 255:
        raise argparse.ArgumentTypeError(f"expected a whole number 0..255, got {s!r}")
    return v


def _bitrate_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--bitrate", type=float, default=6.0, metavar="KBPS",
                   help="kbit/s per channel: 3, 4.5, 6 or 7.5 (those the model card lists; "
                        "default 6)")
    p.add_argument("--level-bands", type=_level_bands, default=0, metavar="N",
                   help="also send the input's band balance: gains in N ERB bands per second "
                        "(e.g. 24: +96 bit/s per channel; better ViSQOL on most material, "
                        "see README, Limits). Default 0: none")


def postfilter_option(p: argparse.ArgumentParser) -> None:
    """``--postfilter`` / ``--no-postfilter``; neither: on with ``--nfe`` or ``--seed``, else
    as the model card recommends."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--postfilter", dest="postfilter", action="store_true", default=None,
                   help="run the flow-matching postfilter (default: on when --nfe or --seed "
                        "is given, else as the model card recommends from its evaluation; "
                        "the summary says which ran)")
    g.add_argument("--no-postfilter", dest="postfilter", action="store_false",
                   help="plain codec output, without the postfilter")


def nfe_seed_options(p: argparse.ArgumentParser, asks: bool = True) -> None:
    """``--nfe`` and ``--seed`` (default None: not given). ``asks``: giving either runs the
    postfilter unless ``--no-postfilter`` (:meth:`flowdec.codec.Codec.use_postfilter`)."""
    ask = "; giving it turns the postfilter on unless --no-postfilter" if asks else ""
    p.add_argument("--nfe", type=_positive_int, default=None,
                   help=f"postfilter network evaluations, even for the midpoint solver "
                        f"(default {DEFAULT_NFE}){ask}")
    p.add_argument("--seed", type=int, default=None,
                   help=f"postfilter noise seed (default {DEFAULT_SEED}: the same input "
                        f"gives the same output){ask}")


def _solver_options(p: argparse.ArgumentParser, asks: bool = True) -> None:
    nfe_seed_options(p, asks)
    p.add_argument("--solver", choices=("midpoint", "euler"), default="midpoint",
                   help="postfilter ODE solver (default midpoint)")


def _decode_options(p: argparse.ArgumentParser) -> None:
    _solver_options(p)
    postfilter_option(p)


def _chunk_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chunk-seconds", type=_positive_float, default=10.0, metavar="S",
                   help="processing chunk in seconds; bounds memory (default 10)")


# -- the built-in verbs ----------------------------------------------------------------------
def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register encode, decode, roundtrip, bounce, enhance and info."""
    p = subparsers.add_parser("encode", help="audio file -> .fdc bitstream",
                              description="Encode an audio file (wav, flac, ogg, mp3, aiff; "
                                          "any rate and channel count) to a .fdc file.")
    p.add_argument("input", type=Path, help="audio file")
    p.add_argument("output", type=Path, help="the .fdc file to write")
    _bitrate_option(p)
    _chunk_option(p)
    p.set_defaults(func=_encode)

    p = subparsers.add_parser("decode", help=".fdc bitstream -> audio file",
                              description="Decode a .fdc file to audio at its original rate, "
                                          "channels and length; the format follows the "
                                          "extension (.wav float32, .flac 24-bit, .ogg, .mp3).")
    p.add_argument("input", type=Path, help=".fdc file")
    p.add_argument("output", type=Path, help="audio file to write")
    _decode_options(p)
    _chunk_option(p)
    p.set_defaults(func=_decode)

    p = subparsers.add_parser("roundtrip", help="audio -> codec -> audio, no .fdc file",
                              description="Encode and decode an audio file in one go (what a "
                                          "listener hears at that bitrate).")
    p.add_argument("input", type=Path, help="audio file")
    p.add_argument("output", type=Path, help="audio file to write")
    _bitrate_option(p)
    _decode_options(p)
    _chunk_option(p)
    p.set_defaults(func=_roundtrip)

    p = subparsers.add_parser("bounce", help="round-trip files and folders into a folder",
                              description="Round-trip audio files and whole folders "
                                          "(recursively) into OUT_DIR, keeping the folder tree. "
                                          "A failing file is reported and skipped.")
    p.add_argument("inputs", type=Path, nargs="+", metavar="IN", help="audio files or folders")
    p.add_argument("-o", "--out-dir", type=Path, required=True, help="destination folder")
    p.add_argument("--format", default="wav", choices=("wav", "flac", "ogg", "mp3", "aiff"),
                   help="output format (default wav, 32-bit float)")
    _bitrate_option(p)
    _decode_options(p)
    _chunk_option(p)
    p.set_defaults(func=_bounce)

    p = subparsers.add_parser("enhance", help="the postfilter alone on decoded audio",
                              description="Run the flow-matching postfilter on an audio file "
                                          "the codec decoded without it (flowdec decode "
                                          "--no-postfilter, or another program); rate, "
                                          "channels and length are kept.")
    p.add_argument("input", type=Path, help="decoded audio file")
    p.add_argument("output", type=Path, help="audio file to write")
    _solver_options(p, asks=False)
    _chunk_option(p)
    p.set_defaults(func=_enhance)

    p = subparsers.add_parser("info", help="describe .fdc files",
                              description="Header fields, duration, bitrate, packets, file size "
                                          "and model of .fdc files (and whether that model is "
                                          "the installed one).")
    p.add_argument("files", type=Path, nargs="+", metavar="FILE", help=".fdc files")
    p.set_defaults(func=_info)


def _decode_kw(args: argparse.Namespace) -> dict[str, Any]:
    return {"nfe": args.nfe, "seed": args.seed, "postfilter": args.postfilter,
            "solver": args.solver, "chunk_seconds": args.chunk_seconds,
            "progress": progress_arg(args)}


def _encode(args: argparse.Namespace) -> int:
    from .files import encode_file

    r = encode_file(load_codec(args), args.input, args.output, bitrate=args.bitrate,
                    chunk_seconds=args.chunk_seconds, progress=progress_arg(args),
                    level_bands=args.level_bands)
    say(args, r.summary())
    return 0


def _decode(args: argparse.Namespace) -> int:
    from .files import decode_file

    r = decode_file(load_codec(args), args.input, args.output, **_decode_kw(args))
    say(args, r.summary())
    return 0


def _roundtrip(args: argparse.Namespace) -> int:
    from .files import roundtrip_file

    r = roundtrip_file(load_codec(args), args.input, args.output, bitrate=args.bitrate,
                       level_bands=args.level_bands, **_decode_kw(args))
    say(args, r.summary())
    return 0


def _bounce(args: argparse.Namespace) -> int:
    from .files import bounce

    r = bounce(load_codec(args), args.inputs, args.out_dir, bitrate=args.bitrate,
               suffix="." + args.format, on_result=lambda res: say(args, res.summary()),
               level_bands=args.level_bands, **_decode_kw(args))
    say(args, r.summary())
    return 1 if r.failures else 0


def _enhance(args: argparse.Namespace) -> int:
    from .files import FlowdecError, enhance_file
    from .model_files import ModelError
    from .postfilter import Postfilter
    from .sessions import DeviceError

    try:
        pf = Postfilter(args.model or os.environ.get(MODEL_ENV) or None, args.device,
                        args.threads)
    except (ModelError, DeviceError) as e:
        raise FlowdecError(str(e)) from None
    r = enhance_file(pf, args.input, args.output, nfe=args.nfe, seed=args.seed,
                     solver=args.solver, chunk_seconds=args.chunk_seconds,
                     progress=progress_arg(args))
    say(args, r.summary())
    return 0


def _info(args: argparse.Namespace) -> int:
    from .files import stream_info

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


# -- entry point -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowdec",
        description="flowdec: a full-band 48 kHz neural audio codec (3-7.5 kbit/s per channel) "
                    "with a flow-matching postfilter.",
    )
    parser.add_argument("--version", action="version", version=f"flowdec {__version__}")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in VERB_MODULES:
        importlib.import_module(name).add_parser(sub)
    for p in sub.choices.values():
        if not any(a.dest == "quiet" for a in p._actions):
            _add_global_options(p, top=False)
    return parser


class _StderrHandler(logging.Handler):
    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        level = {"INFO": "note"}.get(record.levelname, record.levelname.lower())
        print(f"flowdec: {level}: {record.getMessage()}", file=self.stream, flush=True)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    print(f"flowdec: warning: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage, 130 Ctrl-C,
    143 SIGTERM, 129 SIGHUP)."""
    args = build_parser().parse_args(argv)
    handler = _StderrHandler(sys.stderr)
    _log.addHandler(handler)
    old_level, old_propagate = _log.level, _log.propagate
    _log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    _log.propagate = False
    try:
        with warnings.catch_warnings(), _terminate_like_ctrl_c():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            return _run(args)
    finally:
        _log.removeHandler(handler)
        _log.setLevel(old_level)
        _log.propagate = old_propagate


def _run(args: argparse.Namespace) -> int:
    from .bitstream import BitstreamError
    from .files import FlowdecError
    from .model_files import ModelError
    from .sessions import DeviceError

    try:
        status: Any = args.func(args)
        return int(status)
    except (FlowdecError, BitstreamError, ModelError, DeviceError) as e:
        _error(str(e))
        return 1
    except OSError as e:
        _error(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
        return 1
    except Terminated as e:
        _error(f"terminated by {signal.Signals(e.signum).name} (no partial output was kept)", "")
        return 128 + e.signum
    except KeyboardInterrupt:
        _error("interrupted (no partial output was kept)", "")
        return 130


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP while a verb runs: raised in the main thread so that the verb unwinds
    as on Ctrl-C (every temporary file is removed); the exit status is 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once
    raise Terminated(signum)


@contextmanager
def _terminate_like_ctrl_c() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` instead of ending the process on the spot
    (which left ``.NAME.xxxx.tmp`` files behind); signals set to be ignored (``nohup``) or
    handled (``serve`` installs its own) are left alone."""
    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                old[sig] = signal.signal(sig, _terminated)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _error(message: str, kind: str = "error: ") -> None:
    print(f"flowdec: {kind}{' '.join(message.split())}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
