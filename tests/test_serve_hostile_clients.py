"""The shared backend survives any client: one misbehaving plugin (or a hostile local
process) never takes service away from the other instances.

Every hostile client here talks to a real ``flowdec serve`` over a real socket with real
memfds and eventfds. Nothing depends on machine speed: the checks are "every chunk of the good
client was answered, in order, with the right samples" and "the backend's descriptors and
mappings come back to where they were", with generous timeouts.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from flowdec import _core
from test_plugin_common import PyClient, start_backend, stop

DELAY = 100
HELLO = (2, 48000, 480, 8)  # channels, rate, chunk, slots


@pytest.fixture()
def backend(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    sock = tmp_path / "b.sock"
    proc = start_backend(sock, engine=f"delay:{DELAY}")
    yield sock, proc
    stop(proc)
    assert proc.returncode == 0, "the backend died"


# -- hostile clients ------------------------------------------------------------------------------
def connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))  # blocking: waits while the backlog is full, as a plugin does
    s.settimeout(30)
    return s


def read_reply(s: socket.socket) -> tuple[int, str] | None:
    """(status, message) of the backend's Reply, or None when it hung up without one."""
    data = b""
    while len(data) < _core.PROTOCOL_REPLY_BYTES:
        part = s.recv(_core.PROTOCOL_REPLY_BYTES - len(data))
        if not part:
            return None
        data += part
    _v, status, _lat, _lat_post, msg = _core.protocol_parse_reply(data)
    return status, msg


def region_bytes() -> bytes:
    """A correctly initialised region (control header, empty rings) for ``HELLO``."""
    ch = _core.ProtocolChannel.create(HELLO[0], HELLO[1], HELLO[2], HELLO[3])
    data = os.pread(ch.fd, os.fstat(ch.fd).st_size, 0)
    ch.close()
    return data


def memfd(sealed: bool) -> int:
    fd = os.memfd_create("hostile", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, region_bytes())
    if sealed:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    return fd


def eventfd() -> int:
    return os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)


def hello_with(path: Path, fds: list[int], close_fds: bool = True) -> tuple[socket.socket,
                                                                            tuple[int, str] | None]:
    """Send a valid Hello with ``fds``; returns the socket and the reply."""
    s = connect(path)
    socket.send_fds(s, [_core.protocol_make_hello(*HELLO, client="hostile")], fds)
    reply = read_reply(s)
    if close_fds:
        for fd in fds:
            os.close(fd)
    return s, reply


def shrink_memfd(path: Path) -> None:
    """An unsealed memfd, shrunk to nothing after the handshake, then the doorbell."""
    m, bell = memfd(sealed=False), eventfd()
    s, reply = hello_with(path, [m, bell, eventfd()], close_fds=False)
    if reply is not None and reply[0] == _core.PROTOCOL_STATUS_OK:
        os.ftruncate(m, 0)
        os.eventfd_write(bell, 1)
        time.sleep(0.5)  # give the backend the chance to touch it
    assert reply is not None and reply[0] == _core.PROTOCOL_STATUS_BAD_SHM, reply
    assert "F_SEAL_SHRINK" in reply[1]
    s.close()
    os.close(m)
    os.close(bell)


def sealed_memfd_cannot_shrink(path: Path) -> None:
    m = memfd(sealed=True)
    s, reply = hello_with(path, [m, eventfd(), eventfd()], close_fds=False)
    assert reply is not None and reply[0] == _core.PROTOCOL_STATUS_OK, reply
    with pytest.raises(PermissionError):
        os.ftruncate(m, 0)
    s.close()
    os.close(m)


def file_doorbells(path: Path, tmp: Path) -> None:
    """Regular files where the eventfds belong (and where the memfd belongs)."""
    f = tmp / "not-an-eventfd"
    f.write_bytes(b"x" * 64)
    for fds in ([memfd(True), os.open(f, os.O_RDWR), os.open(f, os.O_RDWR)],
                [memfd(True), eventfd(), os.open(f, os.O_RDWR)],
                [os.open(f, os.O_RDWR), eventfd(), eventfd()]):
        s, reply = hello_with(path, fds)
        assert reply is not None and reply[0] == _core.PROTOCOL_STATUS_BAD_SHM, reply
        s.close()
        # the next connection reuses the descriptor numbers the refused one had
        ok = PyClient(path, channels=1, chunk=480)
        assert ok.status == _core.PROTOCOL_STATUS_OK, ok.message
        ok.close()
    r, w = os.pipe()
    s, reply = hello_with(path, [memfd(True), r, w])
    assert reply is not None and reply[0] == _core.PROTOCOL_STATUS_BAD_SHM, reply
    assert "eventfd" in reply[1]
    s.close()


def hang_up_after_hello(path: Path, times: int = 30) -> None:
    for _ in range(times):
        s = connect(path)
        fds = [memfd(True), eventfd(), eventfd()]
        socket.send_fds(s, [_core.protocol_make_hello(*HELLO)], fds)
        s.close()
        for fd in fds:
            os.close(fd)


def odd_handshakes(path: Path) -> None:
    """Garbage, a Hello in pieces, too many descriptors, a wrong size, a bare probe."""
    s = connect(path)
    s.sendall(b"\0" * 4096)
    reply = read_reply(s)
    assert reply is not None and reply[0] == _core.PROTOCOL_STATUS_MALFORMED
    s.close()
    s = connect(path)  # a Hello in two pieces is fine
    fds = [memfd(True), eventfd(), eventfd()]
    hello = _core.protocol_make_hello(*HELLO)
    socket.send_fds(s, [hello[:10]], fds)
    time.sleep(0.05)
    s.sendall(hello[10:])
    reply = read_reply(s)
    assert reply is not None and reply[0] == _core.PROTOCOL_STATUS_OK, reply
    s.close()
    for fd in fds:
        os.close(fd)
    many = [eventfd() for _ in range(12)]
    s, reply = hello_with(path, many)
    assert reply is not None and reply[0] != _core.PROTOCOL_STATUS_OK
    s.close()
    m = os.memfd_create("small", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(m, 4096)
    fcntl.fcntl(m, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    s, reply = hello_with(path, [m, eventfd(), eventfd()])
    assert reply is not None and reply[0] == _core.PROTOCOL_STATUS_BAD_SHM, reply
    s.close()
    connect(path).close()


def silent_connections(path: Path, n: int = 10) -> None:
    """Connections that never send a Hello must not delay anyone else's handshake."""
    silent = [connect(path) for _ in range(n)]
    ok = PyClient(path, channels=1, chunk=480)
    assert ok.status == _core.PROTOCOL_STATUS_OK, ok.message
    # Answered while the silent ones still wait for their deadline (seconds away), so the
    # backend did not work through them one at a time.
    still_open = 0
    for s in silent:
        s.setblocking(False)
        try:
            s.recv(1, socket.MSG_PEEK)
        except BlockingIOError:  # no answer and no hang-up yet
            still_open += 1
    assert still_open > 0, "the good handshake waited for every silent connection"
    ok.close()
    for s in silent:  # and the backend closes them after its handshake deadline
        s.settimeout(60)
        while s.recv(4096):  # a refusal, then the hang-up (a timeout here fails the test)
            pass
        s.close()


# -- what the backend holds -----------------------------------------------------------------------
def held(pid: int) -> tuple[int, int]:
    """(open descriptors, memfd mappings) of the backend process."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/maps") as f:
        maps = sum("memfd:" in line for line in f)
    return fds, maps


def wait_for(pred: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


# -- one test per hostile behaviour ---------------------------------------------------------------
def test_unsealed_memfd_refused_and_shrink_is_harmless(backend: tuple[Path, subprocess.Popen[bytes]]
                                                       ) -> None:
    path, proc = backend
    shrink_memfd(path)
    sealed_memfd_cannot_shrink(path)
    assert proc.poll() is None


def test_file_doorbells_refused_and_forgotten(
        backend: tuple[Path, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    path, proc = backend
    file_doorbells(path, tmp_path)
    assert proc.poll() is None


def test_hang_up_after_hello_leaks_nothing(backend: tuple[Path, subprocess.Popen[bytes]]) -> None:
    path, proc = backend
    hang_up_after_hello(path, 1)  # what the backend opens once, for its first client
    wait_for(lambda: held(proc.pid)[1] == 0)
    before = held(proc.pid)  # may still count that client's descriptors (a slow backend)
    hang_up_after_hello(path, 100)
    assert wait_for(lambda: held(proc.pid)[0] <= before[0] and held(proc.pid)[1] == 0), \
        (held(proc.pid), before)


def test_silent_connections_do_not_block_handshakes(
        backend: tuple[Path, subprocess.Popen[bytes]]) -> None:
    path, proc = backend
    silent_connections(path)
    assert proc.poll() is None


def test_odd_handshakes(backend: tuple[Path, subprocess.Popen[bytes]]) -> None:
    path, proc = backend
    odd_handshakes(path)
    assert proc.poll() is None


def test_good_client_streams_through_every_hostile_client(
        backend: tuple[Path, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    """The issue's done-when: a second client keeps streaming without a gap meanwhile."""
    path, proc = backend
    good = PyClient(path, channels=2, chunk=480)
    assert good.status == _core.PROTOCOL_STATUS_OK
    rng = np.random.default_rng(1)
    sent: list[np.ndarray] = []
    got: list[np.ndarray | None] = []
    done = threading.Event()

    def stream() -> None:
        k = 0
        while not done.is_set() or k < 20:
            x = rng.standard_normal((2, 480)).astype(np.float32)
            sent.append(x)
            got.append(good.roundtrip(k, x))  # waits up to 60 s for each chunk
            k += 1

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    assert wait_for(lambda: len(got) >= 5)
    before = held(proc.pid)
    try:
        shrink_memfd(path)
        sealed_memfd_cannot_shrink(path)
        file_doorbells(path, tmp_path)
        hang_up_after_hello(path)
        odd_handshakes(path)
        silent_connections(path)
    finally:
        done.set()
        t.join(120)
    assert proc.poll() is None, "the backend died"
    assert not t.is_alive()
    missing = [k for k, y in enumerate(got) if y is None]
    assert not missing, f"chunks never answered: {missing}"
    x = np.concatenate(sent, axis=1)
    y = np.concatenate([g for g in got if g is not None], axis=1)
    np.testing.assert_array_equal(y[:, DELAY:], x[:, :-DELAY])  # no gap, no reset
    good.close()
    assert wait_for(lambda: held(proc.pid)[0] <= before[0] - 4 and held(proc.pid)[1] == 0), \
        (held(proc.pid), before)


def test_chunk_settings_are_bounded() -> None:
    """A chunk header asking for 2**32 - 1 postfilter evaluations gets at most MAX_NFE
    (the stream would otherwise build a list of two billion solver levels)."""
    from flowdec.serve import MAX_NFE, Client, DelayEngines, Engine, Latencies, Settings

    asked: list[Settings] = []

    class Recording(DelayEngines):
        def make(self, s: Settings) -> Engine:
            asked.append(s)
            return super().make(s)

    plugin = _core.ProtocolChannel.create(*HELLO)
    a, b = socket.socketpair()
    fds = [os.dup(plugin.fd), eventfd(), eventfd()]
    client = Client(a, _core.protocol_make_hello(*HELLO), fds, Latencies(0, 0), "test")
    x = np.zeros((HELLO[0], HELLO[2]), np.float32)
    assert plugin.push_input(0, 1, x, nfe=2**32 - 1, postfilter=True)
    assert client.serve(Recording(0)) == 1
    assert asked and asked[0].nfe <= MAX_NFE
    client.stop()
    a.close()
    b.close()
    plugin.close()
