"""``flowdec serve``: the shared backend behind the flowdec VST3/LV2 plugin.

One backend per user listens on a Unix socket (:func:`socket_path`; directory 0700, socket
0600, the peer's uid checked with ``SO_PEERCRED``). Each plugin instance connects, sends a
versioned Hello with three file descriptors (an anonymous ``memfd`` holding its chunk rings
and two ``eventfd`` doorbells) and keeps the socket open for as long as it wants service.
The ring memory ordering lives in C++ (``flowdec._core.ProtocolChannel``, csrc/protocol.hpp).

The model is loaded once (one :class:`~flowdec.codec.Codec`, one set of ONNX sessions) and
shared by every instance; each instance gets its own :class:`flowdec.Stream` state and its own
thread. On a GPU the network calls of instances working at the same time are joined into one
batch per call (:mod:`flowdec.batching`): one inference call serves every instance with
matching settings. On a CPU the instances' calls run in parallel instead (``--batch`` chooses;
``benchmarks/bench_plugin.py`` measures both).

Latency: the backend reports one constant latency per (rate, chunk, channels) — the largest
over postfilter on/off — and pads the shorter configuration, so toggling a parameter never
shifts timing in the host.

Example::

    $ flowdec serve                      # foreground; the plugin also starts it on demand
    $ FLOWDEC_SOCKET=/tmp/x.sock flowdec serve --engine delay:480 --idle-exit 5
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Protocol

import numpy as np

from . import _core
from .batching import Batcher

if TYPE_CHECKING:
    from .codec import Codec

SOCKET_ENV = "FLOWDEC_SOCKET"
"""Environment variable overriding the socket path (plugin and backend both read it)."""

DEFAULT_IDLE_EXIT = 60.0
"""Seconds without any connected plugin after which the backend exits (0: never)."""

_log = logging.getLogger("flowdec.serve")


def socket_path() -> Path:
    """The per-user backend socket: ``$FLOWDEC_SOCKET``, else
    ``$XDG_RUNTIME_DIR/flowdec/backend.sock``, else ``/tmp/flowdec-<uid>/backend.sock``."""
    env = os.environ.get(SOCKET_ENV)
    if env:
        return Path(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "flowdec" if runtime else Path(f"/tmp/flowdec-{os.getuid()}")
    return base / "backend.sock"


# -- engines ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """What one instance asks for; a chunk whose settings differ starts a new engine."""

    sample_rate: int
    chunk_frames: int
    channels: int
    bitrate: float
    nfe: int
    postfilter: bool
    seed: int


class Engine(Protocol):
    """The processing contract (:class:`flowdec.Stream` satisfies it)."""

    @property
    def latency_samples(self) -> int: ...

    def process(self, block: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


class Engines(Protocol):
    """Makes prepared engines; knows the constant latency it reports to plugins."""

    def latency(self, sample_rate: int, chunk_frames: int, channels: int) -> int: ...

    def make(self, s: Settings) -> Engine: ...


class StreamEngines:
    """The codec: :class:`flowdec.Stream` instances sharing one loaded :class:`Codec`."""

    def __init__(self, codec: Codec, batch: bool | None = None) -> None:
        self.codec = codec
        self._latency: dict[tuple[int, int, int], int] = {}
        if batch is None:  # one GPU: batch; CPU: instances run in parallel on the cores
            batch = codec.device == "cuda"
        self.batcher = Batcher() if batch else None
        if self.batcher is not None:
            codec.share_batches(self.batcher)

    def _stream(self, s: Settings) -> Engine:
        from .stream import Stream

        stream = Stream(self.codec, bitrate=s.bitrate, nfe=s.nfe, postfilter=s.postfilter,
                        seed=s.seed, chunk_ms=1000.0 * s.chunk_frames / s.sample_rate,
                        worker=False, degrade=False)
        stream.prepare(s.sample_rate, s.chunk_frames, s.channels)
        engine: Engine = stream
        return engine

    def latency(self, sample_rate: int, chunk_frames: int, channels: int) -> int:
        key = (sample_rate, chunk_frames, channels)
        if key not in self._latency:
            worst = 0
            for post in (False, True) if self.codec.has_postfilter else (False,):
                s = Settings(sample_rate, chunk_frames, channels, 6.0, 6, post, 0)
                worst = max(worst, int(self._stream(s).latency_samples))
            self._latency[key] = worst
        return self._latency[key]

    def make(self, s: Settings) -> Engine:
        return self._stream(s)


class DelayEngine:
    """A pure delay of ``delay`` samples: diagnostics, IPC benchmarks and protocol tests."""

    def __init__(self, channels: int, delay: int) -> None:
        self.delay = delay
        self._buf = np.zeros((channels, delay), np.float32)

    @property
    def latency_samples(self) -> int:
        return self.delay

    def process(self, block: np.ndarray) -> np.ndarray:
        if self.delay == 0:
            return block.copy()
        joined = np.concatenate([self._buf, block], axis=1)
        self._buf = joined[:, joined.shape[1] - self.delay:].copy()
        return joined[:, :block.shape[1]]

    def reset(self) -> None:
        self._buf[:] = 0.0


class DelayEngines:
    """Engine factory for ``--engine delay:N``."""

    def __init__(self, delay: int) -> None:
        self.delay = delay
        self.batcher: Batcher | None = None

    def latency(self, sample_rate: int, chunk_frames: int, channels: int) -> int:
        return self.delay

    def make(self, s: Settings) -> Engine:
        return DelayEngine(s.channels, self.delay)


# -- one connected plugin instance --------------------------------------------------------------
class Client:
    """A connected plugin instance: its socket, mapped rings, doorbells and engine."""

    def __init__(self, sock: socket.socket, hello: bytes, fds: list[int], latency: int,
                 name: str) -> None:
        self.sock = sock
        self.fd = sock.fileno()  # the key in Backend.clients (stays valid after close)
        self.fds = fds
        self.channel = _core.ProtocolChannel(fds[0], hello)
        self.in_fd, self.out_fd = fds[1], fds[2]
        self.latency = latency
        self.name = name
        c, n = self.channel.channels, self.channel.chunk_frames
        self.inbuf = np.zeros((c, n), np.float32)
        self.engine: Engine | None = None
        self.key: tuple[int, float, int, bool, int] | None = None
        self.pad: DelayEngine | None = None
        self.failed_key: tuple[int, float, int, bool, int] | None = None
        self.skipped = self.channel.skip_input()
        self.wake = threading.Event()
        self._quit = False
        self._thread: threading.Thread | None = None

    def start(self, engines: Engines) -> None:
        """Serve this instance's chunks on its own thread, woken by :attr:`wake`."""
        self._thread = threading.Thread(target=self._loop, args=(engines,), daemon=True,
                                        name=f"flowdec {self.name}")
        self._thread.start()
        self.wake.set()

    def _loop(self, engines: Engines) -> None:
        while not self._quit:
            self.wake.wait(0.25)
            self.wake.clear()
            if self._quit:
                break
            batcher: Batcher | None = getattr(engines, "batcher", None)
            try:
                if batcher is None:
                    self.serve(engines)
                else:
                    with batcher.participant():
                        self.serve(engines)
            except Exception:  # keep serving; the plugin fills what is missing and counts it
                _log.exception("%s: serving failed", self.name)

    def close(self) -> None:
        """Stop the thread (after the chunk it is working on), then release everything."""
        self._quit = True
        self.wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self.channel.close()
        for fd in self.fds:
            os.close(fd)
        self.sock.close()

    def serve(self, engines: Engines) -> int:
        """Process every queued input chunk; returns how many."""
        count = 0
        ch = self.channel
        while True:
            got = ch.pop_input(self.inbuf)
            if got is None:
                break
            index, epoch, bitrate, nfe, postfilter, seed = got
            t0 = time.perf_counter_ns()
            status = 0
            out = self.inbuf
            try:
                out = self._process(engines, (epoch, bitrate, nfe, postfilter, seed))
            except Exception as e:  # a failing engine must not take the backend down
                status = 1
                if self.failed_key != self.key:
                    _log.error("%s: engine failed: %s", self.name, e)
                self.failed_key = self.key
            out = np.ascontiguousarray(out, dtype=np.float32)
            ch.push_output(index, epoch, out, status, time.perf_counter_ns() - t0)
            count += 1
        if count:
            try:
                os.eventfd_write(self.out_fd, 1)
            except OSError:
                pass
        return count

    def _process(self, engines: Engines, key: tuple[int, float, int, bool, int]) -> np.ndarray:
        ch = self.channel
        if self.engine is None or self.key is None or key[1:] != self.key[1:]:
            self.key = key
            self.engine = None
            _epoch, bitrate, nfe, postfilter, seed = key
            nfe = max(2, nfe + nfe % 2)  # the solver takes an even number of evaluations
            s = Settings(ch.sample_rate, ch.chunk_frames, ch.channels, round(bitrate, 3), nfe,
                         postfilter, seed)
            self.engine = engines.make(s)
            extra = self.latency - int(self.engine.latency_samples)
            self.pad = DelayEngine(ch.channels, extra) if extra > 0 else None
        elif key[0] != self.key[0]:  # reset() in the plugin
            self.key = key
            self.engine.reset()
            if self.pad is not None:
                self.pad.reset()
        y = self.engine.process(self.inbuf)
        return self.pad.process(y) if self.pad is not None else y


# -- the server ---------------------------------------------------------------------------------
class BackendBusy(RuntimeError):
    """Another backend already serves this socket."""


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class Backend:
    """The server: accepts plugin instances on one loop and serves each on its own thread.

    Args:
        engines: an engine factory (``StreamEngines(codec)`` or ``DelayEngines(n)``), or a
            callable returning one; a callable is called after the socket is bound, so clients
            wait in the backlog while a model loads instead of starting a second backend.
        path: the socket path (:func:`socket_path`).
        idle_exit: seconds without clients before :meth:`run` returns (0: never).
    """

    def __init__(self, engines: Engines | Callable[[], Engines], path: Path | None = None,
                 idle_exit: float = DEFAULT_IDLE_EXIT) -> None:
        self.path = path or socket_path()
        self.idle_exit = idle_exit
        self._engines_src = engines
        self.engines: Engines | None = None
        self.clients: dict[int, Client] = {}
        self._stop = False
        self._lock_fd = -1
        self.listener: socket.socket | None = None
        self.sel = selectors.DefaultSelector()

    def bind(self) -> None:
        """Take the per-user lock and listen; raises :class:`BackendBusy` when one runs."""
        d = self.path.parent
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = d.stat()
        if st.st_uid != os.getuid():
            raise PermissionError(f"{d} belongs to uid {st.st_uid}, not to this user")
        os.chmod(d, 0o700)
        self._lock_fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._lock_fd)
            self._lock_fd = -1
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise BackendBusy(f"a flowdec backend already serves {self.path}") from None
            raise
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            lst.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        lst.listen(64)
        lst.setblocking(False)
        self.listener = lst
        self.sel.register(lst, selectors.EVENT_READ, ("listen", None))

    def stop(self, *_: object) -> None:
        self._stop = True

    def close(self) -> None:
        for c in list(self.clients.values()):
            self._drop(c)
        if self.listener is not None:
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        self.sel.close()

    def run(self) -> None:
        """Serve until :meth:`stop`, a signal, or ``idle_exit`` seconds without clients."""
        if self.listener is None:
            self.bind()
        if self.engines is None:
            src = self._engines_src
            self.engines = src() if callable(src) and not hasattr(src, "make") else src  # type: ignore[assignment]
        idle_since = time.monotonic()
        _log.info("flowdec backend listening on %s", self.path)
        while not self._stop:
            for key, _mask in self.sel.select(timeout=0.25):
                kind, client = key.data
                if client is not None and self.clients.get(client.fd) is not client:
                    continue  # dropped earlier in this round
                if kind == "listen":
                    self._accept()
                elif kind == "sock" and client is not None:
                    self._on_socket(client)
                elif kind == "ring" and client is not None:
                    self._on_ring(client)
            if self.clients:
                idle_since = time.monotonic()
            elif self.idle_exit > 0 and time.monotonic() - idle_since > self.idle_exit:
                _log.info("no plugin for %.0f s: exiting", self.idle_exit)
                break

    # -- events -----------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self.listener is not None
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        try:
            self._handshake(sock)
        except OSError as e:
            _log.warning("handshake failed: %s", e)
            sock.close()

    def _refuse(self, sock: socket.socket, status: int, message: str, fds: list[int]) -> None:
        _log.warning("refused a plugin: %s", message)
        try:
            sock.sendall(_core.protocol_make_reply(status, 0, message))
        except OSError:
            pass
        for fd in fds:
            os.close(fd)
        sock.close()

    def _handshake(self, sock: socket.socket) -> None:
        sock.settimeout(2.0)
        if _peer_uid(sock) != os.getuid():
            sock.close()  # not ours: say nothing
            return
        msg, fds, _flags, _addr = socket.recv_fds(sock, 1024, 8)
        if not msg and not fds:  # a probe (connect + close): nothing to answer
            sock.close()
            return
        status, why, fields = _core.protocol_check_hello(msg)
        if status != _core.PROTOCOL_STATUS_OK or fields is None:
            self._refuse(sock, status, why, fds)
            return
        if len(fds) != 3:
            self._refuse(sock, _core.PROTOCOL_STATUS_BAD_SHM,
                         f"expected 3 file descriptors (memfd, 2 eventfds), got {len(fds)}", fds)
            return
        assert self.engines is not None
        sr, n, c = (int(fields["sample_rate"]), int(fields["chunk_frames"]),
                    int(fields["channels"]))
        try:
            latency = self.engines.latency(sr, n, c)
        except Exception as e:
            self._refuse(sock, _core.PROTOCOL_STATUS_BACKEND, f"backend cannot serve: {e}", fds)
            return
        name = f"{fields['client'] or 'plugin'}[pid {fields['pid']}]"
        try:
            client = Client(sock, msg, fds, latency, name)
        except ValueError as e:
            self._refuse(sock, _core.PROTOCOL_STATUS_BAD_SHM, str(e), fds)
            return
        sock.sendall(_core.protocol_make_reply(_core.PROTOCOL_STATUS_OK, latency,
                                               f"flowdec backend pid {os.getpid()}"))
        sock.setblocking(False)
        self.clients[client.fd] = client
        self.sel.register(sock, selectors.EVENT_READ, ("sock", client))
        self.sel.register(client.in_fd, selectors.EVENT_READ, ("ring", client))
        _log.info("%s connected: %d ch, %d Hz, chunk %d, latency %d", name, c, sr, n, latency)
        client.start(self.engines)

    def _on_socket(self, client: Client) -> None:
        try:
            data = client.sock.recv(256)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the plugin went away
            _log.info("%s disconnected", client.name)
            self._drop(client)

    def _on_ring(self, client: Client) -> None:
        try:
            os.eventfd_read(client.in_fd)
        except BlockingIOError:
            pass
        except OSError:  # closed under us: the plugin is gone
            self._drop(client)
            return
        client.wake.set()

    def _drop(self, client: Client) -> None:
        self.clients.pop(client.fd, None)
        for obj in (client.sock, client.in_fd):
            try:
                self.sel.unregister(obj)
            except (KeyError, ValueError):
                pass
        client.close()


# -- CLI verb -----------------------------------------------------------------------------------
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
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="flowdec serve: %(message)s")
    delay: int | None = args.engine

    def engines() -> Engines:
        if delay is not None:
            return DelayEngines(delay)
        from .cli import load_codec

        mode = getattr(args, "batch", "auto")
        return StreamEngines(load_codec(args), batch=None if mode == "auto" else mode == "on")

    backend = Backend(engines, args.socket, args.idle_exit)
    try:
        backend.bind()
    except BackendBusy as e:
        _log.warning("%s", e)
        return 3

    def on_signal(signum: int, frame: FrameType | None) -> None:
        backend.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        backend.run()
    finally:
        backend.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m flowdec.serve``: the verb without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="flowdec serve")
    sub = parser.add_subparsers(dest="verb", required=True)
    add_parser(sub)
    for action in sub.choices.values():
        action.add_argument("--model", default=None, help="model folder or shipped name")
        action.add_argument("--device", default="cpu", help="cpu or cuda")
        action.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
        action.add_argument("--quiet", action="store_true", help="log warnings only")
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
