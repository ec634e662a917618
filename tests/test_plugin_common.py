"""Shared helpers for the plugin tests (no tests here): backend processes, a Python client
playing the plugin's role over the real protocol, and the built plugin's paths."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flowdec import _core

if TYPE_CHECKING:
    from flowdec.codec import Codec

REPO = Path(__file__).resolve().parents[1]
PLUGIN_BUILD = Path(os.environ.get("FLOWDEC_PLUGIN_BUILD", REPO / "plugin" / "build"))
VST3 = PLUGIN_BUILD / "FlowdecPlugin_artefacts" / "Release" / "VST3" / "Flowdec.vst3"
LV2 = PLUGIN_BUILD / "lv2" / "Flowdec.lv2"
LV2HOST = PLUGIN_BUILD / "flowdec_lv2host"
EDITOR_CHECK = PLUGIN_BUILD / "flowdec_editor_check"  # the editor's status line, no host
LV2_URI = "urn:flowdec:plugin"
NOT_BUILT = f"plugin not built: run plugin/build.sh (looked for {VST3})"


RATE = 48000
MODEL = os.environ.get("FLOWDEC_TEST_MODEL", "")


def model_path() -> str | None:
    """``FLOWDEC_TEST_MODEL`` if set, else the shipped model (None when neither exists)."""
    if MODEL and Path(MODEL).is_dir():
        return MODEL
    shipped = REPO / "python" / "flowdec" / "models" / "flowdec-75"
    return str(shipped) if shipped.is_dir() else None


@functools.lru_cache(maxsize=1)
def codec(model: str | None) -> Codec:
    from flowdec.codec import Codec

    return Codec.load(model, threads=1)


def stream_reference(x: np.ndarray, postfilter: bool = False, seed: int = 0,
                     bitrate: float = 6.0, chunk_ms: float = 40.0, rate: int = RATE
                     ) -> np.ndarray:
    """flowdec.Stream as the backend runs it for the plugin's settings (the plugin's chunks
    as fixed blocks), latency removed."""
    import flowdec
    s = flowdec.Stream(codec(model_path()), bitrate=bitrate, postfilter=postfilter,
                       seed=seed, chunk_ms=chunk_ms, worker=False, degrade=False)
    block = round(rate * chunk_ms / 1000)
    s.prepare(rate, block, x.shape[0], fixed_block=True)
    lat = s.latency_samples
    n = -(-(x.shape[1] + lat) // block) * block
    padded = np.pad(x, ((0, 0), (0, n - x.shape[1])))
    out = np.concatenate([s.process(padded[:, i:i + block])
                          for i in range(0, n, block)], axis=1)
    return out[:, lat:lat + x.shape[1]]


def backend_latency(chunk: int, channels: int = 2, rate: int = RATE,
                    postfilter: bool = False) -> int:
    """S, the stream latency the codec backend reports for the plugin's chunk on one path
    (its own code: flowdec.Stream's latency for that path)."""
    from flowdec.serve import StreamEngines

    return StreamEngines(codec(model_path())).latency(rate, chunk, channels).of(postfilter)


def plugin_latency(chunk_ms: int, block: int, margin_ms: int = 30, rate: int = RATE,
                   postfilter: bool = False, channels: int = 2) -> int:
    """What the plugin reports: chunk + largest host block + margin + the backend's S of the
    path in use."""
    chunk = round(rate * chunk_ms / 1000)
    return chunk + block + round(rate * margin_ms / 1000) + backend_latency(
        chunk, channels=channels, rate=rate, postfilter=postfilter)


def backend_cmd(sock: Path, engine: str = "delay:0", idle_exit: float = 0.0,
                model: str | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "flowdec", "serve", "--socket", str(sock), "--engine", engine,
           "--idle-exit", str(idle_exit), "--quiet", *extra]
    if model is not None:
        cmd += ["--model", model, "--threads", "1"]
    return cmd


def wait_socket(path: Path, timeout: float = 120.0, proc: subprocess.Popen[bytes] | None = None
                ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"backend exited with {proc.returncode}")
        if path.exists():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(path))
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.02)
    raise TimeoutError(f"no backend on {path}")


def start_backend(sock: Path, engine: str = "delay:0", model: str | None = None,
                  idle_exit: float = 0.0, extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(backend_cmd(sock, engine, idle_exit, model, extra))
    wait_socket(sock, proc=proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PyClient:
    """The plugin's side of the protocol in Python (tests and benchmarks only)."""

    def __init__(self, sock_path: Path, channels: int = 2, rate: int = 48000,
                 chunk: int = 1920, slots: int = 16, version: int | None = None) -> None:
        self.ch = _core.ProtocolChannel.create(channels, rate, chunk, slots)
        self.in_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.out_fd = os.eventfd(0, os.EFD_CLOEXEC)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(sock_path))
        kw = {} if version is None else {"version": version}
        hello = _core.protocol_make_hello(channels, rate, chunk, slots, pid=os.getpid(),
                                          client="pytest", **kw)
        socket.send_fds(self.sock, [hello], [self.ch.fd, self.in_fd, self.out_fd])
        reply = b""
        while len(reply) < _core.PROTOCOL_REPLY_BYTES:
            part = self.sock.recv(_core.PROTOCOL_REPLY_BYTES - len(reply))
            if not part:
                break
            reply += part
        (self.version, self.status, self.latency, self.latency_postfilter,
         self.message) = _core.protocol_parse_reply(reply)
        self.buf = np.zeros((channels, chunk), np.float32)

    def roundtrip(self, index: int, block: np.ndarray, epoch: int = 1,
                  postfilter: bool = True) -> np.ndarray | None:
        """Send one chunk and wait for its output (None after a minute: a hang guard)."""
        from flowdec.stream import LIVE_NFE  # the plugin's default evaluations

        assert self.ch.push_input(index, epoch, np.ascontiguousarray(block, np.float32),
                                  postfilter=postfilter, nfe=LIVE_NFE)
        os.eventfd_write(self.in_fd, 1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = self.ch.pop_output(self.buf)
            if got is not None and got[0] == index:
                return self.buf.copy()
            if got is None:
                os.eventfd_read(self.out_fd)
        return None

    def close(self) -> None:
        self.sock.close()
        self.ch.close()
        os.close(self.in_fd)
        os.close(self.out_fd)


def shm_entries() -> set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()
