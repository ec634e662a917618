"""The ``flowdec`` command (also ``python -m flowdec``): thin verbs over :mod:`flowdec.files`.

    flowdec encode IN OUT.fdc -b 6
    flowdec decode IN.fdc OUT.wav [--postfilter|--no-postfilter --nfe 6 --seed S --solver euler]
    flowdec roundtrip IN OUT.wav -b 6 [--postfilter|--no-postfilter --nfe 6 --seed S]
    flowdec bounce IN... -o DIR [-b 6 ...]
    flowdec info FILE.fdc
    global: --model PATH --device cpu|cuda --threads N --quiet (before or after the verb)

No logic lives here: each verb parses its options, calls one library function and prints
its one-line summary. A :class:`~flowdec.errors.FlowdecError` (or a refused stream, model or
device) is printed as ``flowdec: error: ...`` on stderr with exit status 1; usage errors
exit 2; Ctrl-C exits 130, SIGTERM 143 (outputs are written atomically, so no partial file is
left).

This package is the only place that parses arguments. A verb is a module here with::

    def add_parser(subparsers: argparse._SubParsersAction) -> None:
        p = subparsers.add_parser("live", help="one line", description="...")
        p.set_defaults(func=run)

    def run(args: argparse.Namespace) -> int:      # returns the exit status
        codec = load_codec(args)                   # honours --model/--device/--threads

listed in :data:`VERB_MODULES`. The global options are added to every verb's parser
automatically; heavy modules are imported inside ``run`` so that ``flowdec --help`` stays
fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import stat
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO

from .. import __version__
from .common import DEFAULT_NFE, DEFAULT_SEED, MODEL_ENV, add_global_options, load_codec

VERB_MODULES: tuple[str, ...] = ("flowdec.cli.files",
                                 "flowdec.cli.demo",
                                 "flowdec.cli.serve",
                                 "flowdec.cli.eval",
                                 "flowdec.cli.live")
"""Modules whose ``add_parser(subparsers)`` registers verbs, in ``--help`` order."""

__all__ = ["DEFAULT_NFE", "DEFAULT_SEED", "MODEL_ENV", "build_parser", "load_codec", "main"]

_log = logging.getLogger("flowdec")


# -- entry point -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowdec",
        description="flowdec: a full-band 48 kHz neural audio codec (3-7.5 kbit/s per channel) "
                    "with a flow-matching postfilter.",
    )
    parser.add_argument("--version", action="version", version=f"flowdec {__version__}")
    add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in VERB_MODULES:
        importlib.import_module(name).add_parser(sub)
    for p in sub.choices.values():
        if not any(a.dest == "quiet" for a in p._actions):
            add_global_options(p, top=False)
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
    143 SIGTERM, 129 SIGHUP, 141 when the reader of its output goes away)."""
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
    from ..errors import FlowdecError
    from ..format.bitstream import BitstreamError
    from ..model.files import ModelError
    from ..model.sessions import DeviceError

    try:
        status: Any = args.func(args)
        return int(status)
    except (FlowdecError, BitstreamError, ModelError, DeviceError) as e:
        _error(str(e))
        return 1
    except BrokenPipeError as e:
        if not _stdout_is_a_pipe():  # a socket or a child's pipe: an error like any other
            _error(str(e))
            return 1
        # the reader of our output went away (``flowdec info x.fdc | head``): nothing to say,
        # and nothing more may be written there, not even at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE
    except OSError as e:
        _error(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
        return 1
    except Terminated as e:
        _error(f"terminated by {signal.Signals(e.signum).name} (no partial output was kept)", "")
        return 128 + e.signum
    except KeyboardInterrupt:
        _error("interrupted (no partial output was kept)", "")
        return 130


def _stdout_is_a_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


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
