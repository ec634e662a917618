"""The ``flowdec serve`` verb: the shared backend of the VST3/LV2 plugin, in the foreground.

The plugin starts it as ``python3 -I -m flowdec serve`` with stderr going to its log file
(plugin/README.md), so log lines say when and which process.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from ..serve import (
    DEFAULT_IDLE_EXIT,
    SOCKET_ENV,
    Backend,
    BackendBusy,
    DelayEngines,
    Engines,
    StreamEngines,
)
from .common import load_codec


def parse_engine(spec: str) -> int | None:
    """``"stream"`` -> None (the codec); ``"delay:N"`` -> N samples."""
    if spec == "stream":
        return None
    if spec.startswith("delay:") and spec[6:].isdigit():
        return int(spec[6:])
    raise argparse.ArgumentTypeError(f"engine must be 'stream' or 'delay:N', got {spec!r}")


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the ``serve`` verb."""
    p = subparsers.add_parser(
        "serve", help="run the shared backend for the flowdec VST3/LV2 plugin",
        description="Serve flowdec plugin instances over a per-user Unix socket "
                    f"(${SOCKET_ENV} or $XDG_RUNTIME_DIR/flowdec/backend.sock). "
                    "The plugin starts this itself when no backend answers.")
    p.add_argument("--socket", type=Path, default=None, help="socket path (default: see above)")
    p.add_argument("--idle-exit", type=float, default=DEFAULT_IDLE_EXIT,
                   help="exit after this many seconds without plugins (0: never; default 60)")
    p.add_argument("--engine", type=parse_engine, default=None, metavar="stream|delay:N",
                   help="'stream' (the codec, default) or 'delay:N' (a plain N-sample delay "
                        "for diagnostics and IPC benchmarks)")
    p.add_argument("--batch", choices=["auto", "on", "off"], default="auto",
                   help="join the network calls of concurrent instances into one batch: "
                        "'auto' (default) batches on a GPU only; on a CPU the instances' calls "
                        "run in parallel on the cores instead, which measured faster")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the backend in the foreground; exit status 0, or 3 when one already runs."""
    log = logging.getLogger("flowdec.serve")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s flowdec serve[%(process)d]: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    log.propagate = False  # not the CLI's "flowdec: note:" lines: a log file wants time and pid
    try:
        return _serve(args, log)
    finally:
        log.removeHandler(handler)
        log.propagate = True


def _serve(args: argparse.Namespace, log: logging.Logger) -> int:
    delay: int | None = args.engine

    def engines() -> Engines:
        if delay is not None:
            return DelayEngines(delay)
        mode = getattr(args, "batch", "auto")
        return StreamEngines(load_codec(args), batch=None if mode == "auto" else mode == "on")

    backend = Backend(engines, args.socket, args.idle_exit)
    try:
        backend.bind()
    except BackendBusy as e:
        log.warning("%s", e)
        return 3
    except OSError as e:
        log.error("cannot listen on %s: %s", backend.path, e)
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        backend.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        backend.run()
    finally:
        backend.close()
    return 0
