"""The plugin <-> backend protocol: rings, block counter, handshake, backend service."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from flowdec import _core
from test_plugin_common import PyClient, shm_entries, start_backend, stop


@pytest.fixture()
def backend(tmp_path: Path) -> Iterator[Path]:
    sock = tmp_path / "b.sock"
    proc = start_backend(sock, engine="delay:100")
    yield sock
    stop(proc)
    assert proc.returncode == 0
    assert not sock.exists()


def test_ring_fifo_and_full() -> None:
    a = _core.ProtocolChannel.create(1, 48000, 4, 3)
    hello = _core.protocol_make_hello(1, 48000, 4, 3)
    b = _core.ProtocolChannel(a.fd, hello)
    x = np.arange(4, dtype=np.float32)[None]
    assert [a.push_input(i, 0, x + i) for i in range(4)] == [True, True, True, False]
    assert a.stats()["dropped"] == 1
    out = np.zeros((1, 4), np.float32)
    for i in range(3):
        got = b.pop_input(out)
        assert got is not None and got[0] == i
        np.testing.assert_array_equal(out, x + i)
    assert b.pop_input(out) is None
    with pytest.raises(ValueError, match=r"\[1, 4\]"):
        b.pop_input(np.zeros((2, 4), np.float32))
    b.close()
    a.close()


def test_hello_checks() -> None:
    ok = _core.protocol_make_hello(2, 48000, 1920, 16)
    assert len(ok) == _core.PROTOCOL_HELLO_BYTES
    assert _core.protocol_check_hello(ok)[0] == _core.PROTOCOL_STATUS_OK
    status, why, fields = _core.protocol_check_hello(
        _core.protocol_make_hello(2, 48000, 1920, 16, version=_core.PROTOCOL_VERSION + 1))
    assert status == _core.PROTOCOL_STATUS_VERSION and fields is None
    assert "version mismatch" in why
    assert _core.protocol_check_hello(b"junk")[0] == _core.PROTOCOL_STATUS_MALFORMED
    assert _core.protocol_check_hello(ok[:-1])[0] == _core.PROTOCOL_STATUS_MALFORMED
    bad = _core.protocol_make_hello(99, 48000, 1920, 16)
    assert _core.protocol_check_hello(bad)[0] == _core.PROTOCOL_STATUS_MALFORMED


def test_reply_carries_the_latency_of_both_paths() -> None:
    """Version 2's Reply: status, the stream latency of the codec path and of the postfilter
    path, and a message, in 256 bytes. Status and message stay at bytes 8 and 16, where a
    peer of any version reads a refusal."""
    assert _core.PROTOCOL_VERSION == 2
    r = _core.protocol_make_reply(_core.PROTOCOL_STATUS_OK, 5119, 10239, "flowdec backend")
    assert len(r) == _core.PROTOCOL_REPLY_BYTES == 256
    assert struct.unpack_from("=IIiI", r) == (_core.PROTOCOL_MAGIC, 2, 0, 5119)
    assert r[16:].split(b"\0")[0] == b"flowdec backend"
    assert struct.unpack_from("=I", r, 252) == (10239,)
    assert _core.protocol_parse_reply(r) == (2, 0, 5119, 10239, "flowdec backend")
    cut = _core.protocol_make_reply(_core.PROTOCOL_STATUS_BACKEND, 0, 7, "x" * 300)
    assert _core.protocol_parse_reply(cut)[3:] == (7, "x" * 235)  # the message never spills
    with pytest.raises(ValueError, match="255 bytes"):
        _core.protocol_parse_reply(r[:-1])


def test_backend_serves_in_order_with_counter(backend: Path) -> None:
    c = PyClient(backend, channels=2, chunk=480)
    assert c.status == _core.PROTOCOL_STATUS_OK
    assert (c.latency, c.latency_postfilter) == (100, 100)  # a delay: the same on both paths
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 480 * 6)).astype(np.float32)
    outs = []
    for k in range(6):
        y = c.roundtrip(k, x[:, k * 480:(k + 1) * 480])
        assert y is not None
        outs.append(y)
    y = np.concatenate(outs, axis=1)
    np.testing.assert_array_equal(y[:, 100:], x[:, :-100])  # the delay engine
    # A gap in the block counter is served without shifting anything.
    z = c.roundtrip(10, x[:, :480])
    assert z is not None
    c.close()


def test_wrong_version_refused(backend: Path) -> None:
    c = PyClient(backend, version=_core.PROTOCOL_VERSION + 1)
    assert c.status == _core.PROTOCOL_STATUS_VERSION
    assert "protocol version mismatch" in c.message
    assert c.sock.recv(1) == b""  # closed by the backend
    c.close()
    ok = PyClient(backend)  # the backend survives
    assert ok.status == _core.PROTOCOL_STATUS_OK
    ok.close()


def test_malformed_handshake_refused(backend: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(backend))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    reply = s.recv(_core.PROTOCOL_REPLY_BYTES, socket.MSG_WAITALL)
    _v, status, _lat, _lat_post, msg = _core.protocol_parse_reply(reply)
    assert status == _core.PROTOCOL_STATUS_MALFORMED and "malformed" in msg
    s.close()
    # A correct Hello without the file descriptors.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(backend))
    s.sendall(_core.protocol_make_hello(2, 48000, 1920, 16))
    _v, status, _lat, _lat_post, msg = _core.protocol_parse_reply(
        s.recv(_core.PROTOCOL_REPLY_BYTES, socket.MSG_WAITALL))
    assert status == _core.PROTOCOL_STATUS_BAD_SHM and "file descriptors" in msg
    s.close()


def test_socket_is_owner_only(backend: Path) -> None:
    assert (backend.stat().st_mode & 0o777) == 0o600
    assert (backend.parent.stat().st_mode & 0o077) == 0


def test_second_backend_refuses(backend: Path) -> None:
    import subprocess

    from test_plugin_common import backend_cmd
    r = subprocess.run(backend_cmd(backend), capture_output=True, timeout=60)
    assert r.returncode == 3
    assert b"already serves" in r.stderr


def test_nothing_in_dev_shm(backend: Path) -> None:
    before = shm_entries()
    clients = [PyClient(backend) for _ in range(3)]
    for c in clients:
        c.close()
    assert shm_entries() == before
    assert not any("flowdec" in e for e in os.listdir("/dev/shm"))
