"""``flowdec serve``: the shared backend behind the flowdec VST3/LV2 plugin.

One backend per user listens on a Unix socket (:func:`socket_path`; directory 0700, socket
0600, the peer's uid checked with ``SO_PEERCRED``). Each plugin instance connects, sends a
versioned Hello with three file descriptors (an anonymous ``memfd`` holding its chunk rings,
sealed against shrinking, and two ``eventfd`` doorbells) and keeps the socket open for as long
as it wants service. The ring memory ordering lives in C++ (``flowdec._core.ProtocolChannel``,
csrc/protocol.hpp).

Any client may misbehave without taking service from the others: handshakes are read without
blocking, each within :data:`HANDSHAKE_TIMEOUT` seconds; a memfd that could shrink under the
backend, doorbells that are not eventfds, and wrong sizes are refused with a message; every
instance's chunks are served on its own thread, woken by its own doorbell, so the accept loop
is never on the audio path.

The model is loaded once (one :class:`~flowdec.codec.Codec`, one set of ONNX sessions) and
shared by every instance; each instance gets its own :class:`flowdec.Stream` state and its own
thread. On a GPU the network calls of instances working at the same time are joined into one
batch per call (:mod:`flowdec.model.batching`): one inference call serves every instance with
matching settings. On a CPU the instances' calls run in parallel instead (``--batch`` chooses;
``benchmarks/bench_plugin.py`` measures both).

Latency: the backend reports, per (rate, chunk, channels), the constant stream latency of
each processing path, the codec alone and with the postfilter (:attr:`Stream.latency_samples`
of each; :class:`Latencies`). Each engine's output is aligned to its own path's latency, with
nothing added: the plugin reports the latency of the path in use and re-reports it (restarting
its stream) when the postfilter is switched.

Example::

    $ flowdec serve                      # foreground; the plugin also starts it on demand
    $ FLOWDEC_SOCKET=/tmp/x.sock flowdec serve --engine delay:480 --idle-exit 5
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from . import _core
from .model.batching import Batcher

if TYPE_CHECKING:
    from .codec import Codec
    from .stream import Stream

SOCKET_ENV = "FLOWDEC_SOCKET"
"""Environment variable overriding the socket path (plugin and backend both read it)."""

DEFAULT_IDLE_EXIT = 60.0
"""Seconds without any connected plugin after which the backend exits (0: never)."""

HANDSHAKE_TIMEOUT = 5.0
"""Seconds a new connection has to deliver its Hello before the backend closes it."""

MAX_PENDING = 64
"""Handshakes in progress at once; beyond this the oldest pending connection is closed."""

MAX_NFE = 64
"""Most postfilter evaluations a chunk may ask for (the plugin offers 1-32); more is clamped."""

_SUN_PATH_MAX = 107  # bytes of a Unix socket path (sun_path is 108 with the NUL)

_log = logging.getLogger("flowdec.serve")


def socket_path() -> Path:
    """The per-user backend socket: ``$FLOWDEC_SOCKET``, else
    ``$XDG_RUNTIME_DIR/flowdec/backend.sock`` when ``$XDG_RUNTIME_DIR`` is an absolute path to
    a directory of this user, else ``/tmp/flowdec-<uid>/backend.sock`` (the plugin follows the
    same rules, plugin/Source/BackendLink.cpp)."""
    env = os.environ.get(SOCKET_ENV)
    if env:
        return Path(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        try:
            st = os.stat(runtime)
        except OSError:
            pass
        else:
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
                return Path(runtime) / "flowdec" / "backend.sock"
    return Path(f"/tmp/flowdec-{os.getuid()}") / "backend.sock"


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


class Latencies(NamedTuple):
    """Stream latency (samples at the plugin's rate) of each processing path."""

    codec: int
    """The codec alone (postfilter off)."""
    postfilter: int
    """With the postfilter; the codec's when the model has none."""

    def of(self, postfilter: bool) -> int:
        return self.postfilter if postfilter else self.codec


class Engines(Protocol):
    """Makes prepared engines; knows the constant latencies it reports to plugins."""

    def latency(self, sample_rate: int, chunk_frames: int, channels: int) -> Latencies: ...

    def make(self, s: Settings) -> Engine: ...


class StreamEngines:
    """The codec: :class:`flowdec.Stream` instances sharing one loaded :class:`Codec`."""

    def __init__(self, codec: Codec, batch: bool | None = None) -> None:
        self.codec = codec
        self._latency: dict[tuple[int, int, int], Latencies] = {}
        if batch is None:  # one GPU: batch; CPU: instances run in parallel on the cores
            batch = codec.device == "cuda"
        self.batcher = Batcher() if batch else None
        if self.batcher is not None:
            codec.share_batches(self.batcher)

    def _stream(self, s: Settings) -> Stream:
        from .stream import Stream

        stream = Stream(self.codec, bitrate=s.bitrate, nfe=s.nfe, postfilter=s.postfilter,
                        seed=s.seed, chunk_ms=1000.0 * s.chunk_frames / s.sample_rate,
                        worker=False, degrade=False)
        stream.prepare(s.sample_rate, s.chunk_frames, s.channels, fixed_block=True)
        return stream

    def latency(self, sample_rate: int, chunk_frames: int, channels: int) -> Latencies:
        """The latency of each path, as :attr:`Stream.latency_samples` says (cached). The
        first time, the networks also run at the paths' shapes (:meth:`Stream.warm_up`), so
        that an instance's first chunks are not late."""
        key = (sample_rate, chunk_frames, channels)
        if key not in self._latency:
            def path(post: bool) -> int:
                s = Settings(sample_rate, chunk_frames, channels, 6.0, 6, post, 0)
                stream = self._stream(s)
                try:
                    stream.warm_up()
                except Exception as e:  # a failing model shows in the chunks, not here
                    _log.warning("warming up the %s path failed: %s",
                                 "postfilter" if post else "codec", e)
                return int(stream.latency_samples)

            codec = path(False)
            post = path(True) if self.codec.has_postfilter else codec
            self._latency[key] = Latencies(codec, post)
        return self._latency[key]

    def make(self, s: Settings) -> Engine:
        engine: Engine = self._stream(s)
        return engine


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

    def latency(self, sample_rate: int, chunk_frames: int, channels: int) -> Latencies:
        return Latencies(self.delay, self.delay)

    def make(self, s: Settings) -> Engine:
        return DelayEngine(s.channels, self.delay)


# -- one connected plugin instance --------------------------------------------------------------
def _ring(fd: int) -> None:
    """Add 1 to the eventfd ``fd`` without ever blocking: a counter that is full (its reader
    never reads) is left as it is, so a client cannot park a backend thread in ``write``."""
    try:
        p = select.poll()
        p.register(fd, select.POLLOUT)
        if p.poll(0):
            os.eventfd_write(fd, 1)
    except OSError:
        pass


def _drain(fd: int) -> None:
    """Reset the eventfd ``fd`` once poll reported it readable."""
    try:
        os.eventfd_read(fd)
    except OSError:
        pass


def _eventfd_problem(fd: int) -> str:
    """Empty when ``fd`` is an eventfd, else what it is instead."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc: an eventfd is an anonymous inode (no file type)
        return "" if stat.S_IFMT(os.fstat(fd).st_mode) == 0 else "not an eventfd"
    return "" if target == "anon_inode:[eventfd]" else target


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class Client:
    """A connected plugin instance: its socket, mapped rings, doorbells and engine.

    Creating one maps the memfd (``ValueError`` when it is not sealed against shrinking, of
    the wrong size or without the Hello's header; the descriptors stay the caller's then).
    Once :meth:`start` ran, the instance's own thread owns the mapping and the descriptors
    and releases them when it ends (:meth:`stop`), so no one waits for a chunk in progress.
    The socket stays the backend's.
    """

    def __init__(self, sock: socket.socket, hello: bytes, fds: list[int], latency: Latencies,
                 name: str) -> None:
        self.channel = _core.ProtocolChannel(fds[0], hello)
        self.sock = sock
        self.fd = sock.fileno()  # the key in Backend.clients (stays valid after close)
        self.fds = fds
        self.in_fd, self.out_fd = fds[1], fds[2]
        self.latency = latency
        self.name = name
        c, n = self.channel.channels, self.channel.chunk_frames
        self.inbuf = np.zeros((c, n), np.float32)
        self.engine: Engine | None = None
        self.key: tuple[int, float, int, bool, int] | None = None
        self.failed_key: tuple[int, float, int, bool, int] | None = None
        self.skipped = self.channel.skip_input()
        self._quit = False
        self._released = False
        self._lock = threading.Lock()  # no ring of a descriptor number already closed
        self._thread: threading.Thread | None = None

    def start(self, engines: Engines) -> None:
        """Serve this instance's chunks on its own thread, woken by its input doorbell."""
        self._thread = threading.Thread(target=self._loop, args=(engines,), daemon=True,
                                        name=f"flowdec {self.name}")
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end after the chunk it is working on; returns at once. Without a
        thread (never started) the mapping and descriptors are released here."""
        with self._lock:
            self._quit = True
            if self._released:
                return
            if self._thread is not None:
                _ring(self.in_fd)  # wakes its poll (or a read the client raced to empty)
                return
        self.release()

    def join(self, timeout: float) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def release(self) -> None:
        """Unmap the rings and close the three descriptors (once)."""
        with self._lock:
            if self._released:
                return
            self._released = True
            self.channel.close()
            _close_all(self.fds)

    def _loop(self, engines: Engines) -> None:
        batcher: Batcher | None = getattr(engines, "batcher", None)
        bell = select.poll()
        bell.register(self.in_fd, select.POLLIN)
        try:
            while not self._quit:
                # 250 ms: the ring is also looked at now and then, should a doorbell get lost
                if bell.poll(250):
                    _drain(self.in_fd)
                if self._quit:
                    break
                try:
                    if batcher is None:
                        self.serve(engines)
                    else:
                        with batcher.participant():
                            self.serve(engines)
                except Exception:  # keep serving; the plugin fills what is missing and counts it
                    _log.exception("%s: serving failed", self.name)
        finally:
            self.release()

    def serve(self, engines: Engines) -> int:
        """Process every queued input chunk; returns how many."""
        count = 0
        ch = self.channel
        while not self._quit:
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
            _ring(self.out_fd)
        return count

    def _process(self, engines: Engines, key: tuple[int, float, int, bool, int]) -> np.ndarray:
        ch = self.channel
        if self.engine is None or self.key is None or key[1:] != self.key[1:]:
            self.key = key
            self.engine = None
            _epoch, bitrate, nfe, postfilter, seed = key
            # the solver takes an even number of evaluations; the header is client data
            nfe = min(max(2, nfe + nfe % 2), MAX_NFE)
            s = Settings(ch.sample_rate, ch.chunk_frames, ch.channels, round(bitrate, 3), nfe,
                         postfilter, seed)
            engine = engines.make(s)
            # the plugin plays this path's output at the latency it was told for the path
            got, told = int(engine.latency_samples), self.latency.of(postfilter)
            if got != told:
                raise RuntimeError(f"the engine's latency is {got} samples, the plugin was told "
                                   f"{told} for the {'postfilter' if postfilter else 'codec'} "
                                   "path")
            self.engine = engine
        elif key[0] != self.key[0]:  # reset() in the plugin
            self.key = key
            self.engine.reset()
        return self.engine.process(self.inbuf)


# -- the server ---------------------------------------------------------------------------------
class BackendBusy(RuntimeError):
    """Another backend already serves this socket."""


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _open_socket_dir(d: Path) -> int:
    """Open (creating it 0700 when missing) the socket's directory without following a
    symbolic link; it must belong to this user and may not be writable by others unless
    sticky. Only a directory created here is chmod-ed. Returns an ``O_DIRECTORY`` fd."""
    created = False
    try:
        os.mkdir(d, 0o700)
        created = True
    except FileExistsError:
        pass
    except FileNotFoundError:
        d.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.mkdir(d, 0o700)
        created = True
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise PermissionError(e.errno, "not a directory (a symbolic link?): refusing to put "
                                           "the backend socket there", str(d)) from None
        raise
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            raise PermissionError(errno.EPERM, f"belongs to uid {st.st_uid}, not to this user",
                                  str(d))
        if created:
            os.fchmod(fd, 0o700)
        elif st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise PermissionError(errno.EPERM, "is writable by others: refusing to put the "
                                               "backend socket there", str(d))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _file_id(name: str, dir_fd: int) -> tuple[int, int] | None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


@dataclass(eq=False)
class _Pending:
    """A connection whose Hello has not fully arrived yet."""

    sock: socket.socket
    fd: int
    deadline: float
    data: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)


class Backend:
    """The server: accepts plugin instances on one loop and serves each on its own thread.

    The loop only accepts, reads handshakes (never blocking: a Hello may arrive in pieces
    within ``handshake_timeout`` seconds) and watches for hang-ups; chunks never pass through
    it, so no connection can delay another instance's audio.

    Args:
        engines: an engine factory (``StreamEngines(codec)`` or ``DelayEngines(n)``), or a
            callable returning one; a callable is called after the socket is bound, so clients
            wait in the backlog while a model loads instead of starting a second backend.
        path: the socket path (:func:`socket_path`).
        idle_exit: seconds without clients before :meth:`run` returns (0: never).
        handshake_timeout: seconds a connection has to deliver its Hello.
    """

    def __init__(self, engines: Engines | Callable[[], Engines], path: Path | None = None,
                 idle_exit: float = DEFAULT_IDLE_EXIT,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        self.path = path or socket_path()
        self.idle_exit = idle_exit
        self.handshake_timeout = handshake_timeout
        self._engines_src = engines
        self.engines: Engines | None = None
        self.clients: dict[int, Client] = {}
        self.pending: dict[int, _Pending] = {}
        self._stop = False
        self._dir_fd = -1
        self._lock_fd = -1
        self._sock_id: tuple[int, int] | None = None
        self._accept_paused_until = 0.0
        self.listener: socket.socket | None = None
        self.sel = selectors.DefaultSelector()

    # -- the socket path ----------------------------------------------------------------------
    def bind(self) -> None:
        """Take the per-user lock and listen; raises :class:`BackendBusy` when one runs.

        Safe on a shared ``/tmp``: the directory is opened without following symbolic links
        (:func:`_open_socket_dir`) and everything after that happens relative to it. Only a
        stale socket of this user that nobody listens on is replaced; any other file at the
        path is an error. :meth:`close` removes the socket and the lock file.
        """
        name = self.path.name
        if not name or len(os.fsencode(str(self.path))) > _SUN_PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, "not a usable socket path (Unix sockets allow "
                                              f"{_SUN_PATH_MAX} bytes)", str(self.path))
        try:
            self._dir_fd = _open_socket_dir(self.path.parent)
            self._lock_fd = self._take_lock(name + ".lock")
            self._remove_stale(name)
            self._listen(name)
        except BaseException:
            self._release_path()
            raise

    def _at(self, name: str) -> str:
        """A path to ``name`` in the opened socket directory that no symlink can redirect."""
        proc = f"/proc/self/fd/{self._dir_fd}"
        via = f"{proc}/{name}"
        if len(os.fsencode(via)) <= _SUN_PATH_MAX and os.path.isdir(proc):
            return via
        return str(self.path)

    def _take_lock(self, name: str) -> int:
        for _attempt in range(10):
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=self._dir_fd)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
                    raise PermissionError(errno.EPERM, "is not a lock file of this user",
                                          str(self.path.parent / name))
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise BackendBusy(f"a flowdec backend already serves {self.path}") from None
                    raise
            except BaseException:
                os.close(fd)
                raise
            if _file_id(name, self._dir_fd) == (st.st_dev, st.st_ino):
                return fd
            os.close(fd)  # the backend before us removed the file as we locked it: again
        raise BackendBusy(f"the lock file of {self.path} keeps changing")

    def _remove_stale(self, name: str) -> None:
        """Remove a socket left by a backend that died: only one of this user's, and only
        when nothing answers on it (holding the lock, no flowdec backend does)."""
        try:
            st = os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
            raise FileExistsError(errno.EEXIST, "exists and is not a socket of this user: "
                                                "not replacing it", str(self.path))
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            probe.connect(self._at(name))
        except ConnectionRefusedError:
            pass  # stale
        except FileNotFoundError:
            return
        except BlockingIOError:
            raise FileExistsError(errno.EADDRINUSE, "another program listens on this socket",
                                  str(self.path)) from None
        else:
            raise FileExistsError(errno.EADDRINUSE, "another program listens on this socket",
                                  str(self.path))
        finally:
            probe.close()
        os.unlink(name, dir_fd=self._dir_fd)

    def _listen(self, name: str) -> None:
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)  # born 0600: no moment in which others could connect
            try:
                lst.bind(self._at(name))
            finally:
                os.umask(old)
            st = os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)
            self._sock_id = (st.st_dev, st.st_ino)
            lst.listen(64)
            lst.setblocking(False)
        except BaseException:
            lst.close()
            raise
        self.listener = lst
        self.sel.register(lst, selectors.EVENT_READ, ("listen", None))

    def _release_path(self) -> None:
        """Remove our socket and lock file (never a file that replaced them), close the fds."""
        d = self._dir_fd
        if d < 0:
            return
        name = self.path.name
        if self._sock_id is not None and _file_id(name, d) == self._sock_id:
            os.unlink(name, dir_fd=d)
        self._sock_id = None
        if self._lock_fd >= 0:
            st = os.fstat(self._lock_fd)
            if _file_id(name + ".lock", d) == (st.st_dev, st.st_ino):
                os.unlink(name + ".lock", dir_fd=d)  # still holding the lock: nobody else's
            os.close(self._lock_fd)
            self._lock_fd = -1
        os.close(d)
        self._dir_fd = -1

    # -- the loop -----------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        self._stop = True

    def close(self) -> None:
        for p in list(self.pending.values()):
            self._forget(p)
        clients = list(self.clients.values())
        for c in clients:
            self._drop(c)
        for c in clients:
            c.join(5.0)
        if self.listener is not None:
            if not self._accept_paused_until:
                self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None
        self._release_path()
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
            timeout = 0.25
            if self.pending:
                first = min(p.deadline for p in self.pending.values())
                timeout = min(timeout, max(0.0, first - time.monotonic()))
            for key, _mask in self.sel.select(timeout=timeout):
                kind, obj = key.data
                if kind == "listen":
                    self._accept()
                elif isinstance(obj, _Pending) and self.pending.get(obj.fd) is obj:
                    self._on_hello(obj)
                elif isinstance(obj, Client) and self.clients.get(obj.fd) is obj:
                    self._on_socket(obj)  # else: forgotten earlier in this round
            now = time.monotonic()
            for p in [p for p in self.pending.values() if p.deadline <= now]:
                self._refuse(p, _core.PROTOCOL_STATUS_MALFORMED,
                             f"no complete handshake within {self.handshake_timeout:g} s")
            if self._accept_paused_until and now >= self._accept_paused_until:
                self._accept_paused_until = 0.0
                assert self.listener is not None
                self.sel.register(self.listener, selectors.EVENT_READ, ("listen", None))
            if self.clients or self.pending:
                idle_since = now
            elif self.idle_exit > 0 and now - idle_since > self.idle_exit:
                _log.info("no plugin for %.0f s: exiting", self.idle_exit)
                break

    # -- handshakes ---------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self.listener is not None
        for _ in range(MAX_PENDING):  # a burst per round; the listener stays readable otherwise
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as e:  # out of descriptors: the listener would stay readable
                _log.warning("cannot accept a plugin: %s", e)
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.sel.unregister(self.listener)
                    self._accept_paused_until = time.monotonic() + 1.0
                return
            try:
                if _peer_uid(sock) != os.getuid():
                    sock.close()  # not ours: say nothing
                    continue
                sock.setblocking(False)
            except OSError:
                sock.close()
                continue
            if len(self.pending) >= MAX_PENDING:
                oldest = min(self.pending.values(), key=lambda p: p.deadline)
                _log.warning("too many handshakes at once: closing the oldest")
                self._forget(oldest)
            p = _Pending(sock, sock.fileno(), time.monotonic() + self.handshake_timeout)
            self.pending[p.fd] = p
            self.sel.register(sock, selectors.EVENT_READ, ("hello", p))

    def _unlist(self, p: _Pending) -> None:
        if self.pending.get(p.fd) is p:
            del self.pending[p.fd]
            self.sel.unregister(p.sock)

    def _forget(self, p: _Pending) -> None:
        """Close a pending connection and the descriptors it sent."""
        self._unlist(p)
        _close_all(p.fds)
        p.fds = []
        p.sock.close()

    def _refuse(self, p: _Pending, status: int, message: str) -> None:
        _log.warning("refused a plugin: %s", message)
        try:
            p.sock.send(_core.protocol_make_reply(status, 0, 0, message))
        except OSError:
            pass
        self._forget(p)

    def _on_hello(self, p: _Pending) -> None:
        try:
            msg, fds, flags, _addr = socket.recv_fds(p.sock, 1024, 8)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            _log.info("handshake failed: %s", e)
            self._forget(p)
            return
        p.fds.extend(fds)
        if not msg:  # hung up (or a probe: connect + close): nothing to answer
            if p.data or p.fds:
                _log.info("a plugin hung up during its handshake")
            self._forget(p)
            return
        p.data += msg
        if flags & socket.MSG_CTRUNC:
            self._refuse(p, _core.PROTOCOL_STATUS_BAD_SHM,
                         "too many file descriptors (expected 3: memfd, 2 eventfds)")
            return
        n, full = len(p.data), _core.PROTOCOL_HELLO_BYTES
        if n >= 8:
            magic, version = struct.unpack_from("=II", p.data)
            if magic != _core.PROTOCOL_MAGIC or version != _core.PROTOCOL_VERSION or n > full:
                status, why, _fields = _core.protocol_check_hello(bytes(p.data))
                self._refuse(p, status, why)
                return
        if n == full:
            self._complete(p)

    def _complete(self, p: _Pending) -> None:
        """A whole Hello has arrived: check it and its descriptors, answer, start serving."""
        status, why, fields = _core.protocol_check_hello(bytes(p.data))
        if status != _core.PROTOCOL_STATUS_OK or fields is None:
            self._refuse(p, status, why)
            return
        if len(p.fds) != 3:
            self._refuse(p, _core.PROTOCOL_STATUS_BAD_SHM,
                         f"expected 3 file descriptors (memfd, 2 eventfds), got {len(p.fds)}")
            return
        for fd in p.fds[1:]:
            what = _eventfd_problem(fd)
            if what:
                self._refuse(p, _core.PROTOCOL_STATUS_BAD_SHM,
                             f"the doorbells must be eventfds, got {what}")
                return
        assert self.engines is not None
        sr, n, c = (int(fields["sample_rate"]), int(fields["chunk_frames"]),
                    int(fields["channels"]))
        try:
            latency = self.engines.latency(sr, n, c)
        except Exception as e:
            self._refuse(p, _core.PROTOCOL_STATUS_BACKEND, f"backend cannot serve: {e}")
            return
        name = f"{fields['client'] or 'plugin'}[pid {fields['pid']}]"
        try:
            client = Client(p.sock, bytes(p.data), p.fds, latency, name)
        except (ValueError, OSError) as e:
            self._refuse(p, _core.PROTOCOL_STATUS_BAD_SHM, str(e))
            return
        p.fds = []  # the client's now
        self._unlist(p)
        reply = _core.protocol_make_reply(_core.PROTOCOL_STATUS_OK, latency.codec,
                                          latency.postfilter,
                                          f"flowdec backend pid {os.getpid()}")
        try:
            sent = p.sock.send(reply)
        except OSError:
            sent = -1
        if sent != len(reply):  # hung up right after its Hello
            _log.info("%s hung up during its handshake", name)
            client.release()
            p.sock.close()
            return
        self.clients[client.fd] = client
        self.sel.register(p.sock, selectors.EVENT_READ, ("sock", client))
        _log.info("%s connected: %d ch, %d Hz, chunk %d, latency %d (codec), %d (postfilter)",
                  name, c, sr, n, latency.codec, latency.postfilter)
        client.start(self.engines)

    # -- connected clients --------------------------------------------------------------------
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

    def _drop(self, client: Client) -> None:
        """Forget a client; its thread releases the rings and doorbells when it ends."""
        if self.clients.get(client.fd) is client:
            del self.clients[client.fd]
            self.sel.unregister(client.sock)
        client.sock.close()
        client.stop()
