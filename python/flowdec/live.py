"""``flowdec live``: microphone → encoder → ``.fdc`` packets → decoder → postfilter → speakers.

A thin real-time shell around :class:`flowdec.Stream` (``worker=True``): the audio callback
only calls :meth:`Stream.process` (which only copies into and out of ring buffers); the model
runs on the stream's worker thread; the main thread shows the status and writes files.

    flowdec live                                  # default microphone → default speakers
    flowdec live --list-devices
    flowdec live --input 2 --output "USB" -b 3 --no-postfilter
    flowdec live --input-file in.wav --output-file out.wav --packets-file out.fdc
    flowdec live --input pulse --output-file out.wav --duration 10

Each side is a sound device (``--input``/``--output``: an index or a name substring from
``--list-devices``; default: the system default) or a file (``--input-file``/
``--output-file``), which runs the same path at real-time pace: a file input ends the
session at its end plus the latency (so the output file holds all of it, delayed by the
engine latency: ``out[n + latency_samples] ≈ in[n]``), and a file output is written under a
temporary name and renamed when the session ends. Two files need no audio backend at all.

Latency (what the status line shows): the engine's fixed latency
(:attr:`Stream.latency_samples`, 40-ms chunks, ``--block 512`` at 48 kHz: about 0.15 s
without the postfilter, 0.23 s with it) plus the input and output latencies the audio
backend reports for the open devices. Longer chunks (``--chunk-ms``) cost more latency and
give the postfilter's window context a smaller share of the work.

Stopping: ``--duration S`` (exactly ``S × rate`` output samples), the end of an input file, or
Ctrl-C — the normal way to end a session from devices: the stream is closed, files are
finalised, the summary is printed and the exit status is 0. A second Ctrl-C during that
shutdown aborts with status 130 and leaves no partial file.

Needs ``pip install sounddevice`` (the ``live`` extra) and the PortAudio library
(``apt-get install libportaudio2``) for devices; scripts/pulse_null_sink.sh starts a
headless PulseAudio with null sinks for tests on machines without a sound card.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .codec import Codec
    from .stream import Stream

DEFAULT_BLOCK = 512
"""Host samples per audio callback (PortAudio is asked for exactly this many)."""
STATUS_INTERVAL = 0.5
"""Seconds between status updates (a refreshed line on a terminal)."""
PLAIN_STATUS_INTERVAL = 1.0
"""Seconds between status lines when stderr is not a terminal."""
OUT_RING_SECONDS = 8.0
"""Output-file ring capacity: how long the main thread may stall before output is lost."""

LIVE_THREADS = 1
"""Inference threads unless ``--threads`` is given. The engine's worker is one thread; a
second compute thread would take the core the audio callback needs and make its ``process``
calls late without making the worker faster (``benchmarks/bench_stream.py``)."""

SOUNDDEVICE_HINT = "pip install sounddevice (or: pip install 'flowdec[live]')"
PORTAUDIO_HINT = "apt-get install libportaudio2 (Debian/Ubuntu; brew install portaudio on macOS)"


class LiveError(Exception):
    """A device, backend or file problem; its message is one line saying how to fix it."""


# -- audio backend ---------------------------------------------------------------------------
def import_sounddevice() -> Any:
    """The ``sounddevice`` module, or :class:`LiveError` saying how to install what is missing."""
    try:
        import sounddevice
    except ImportError:
        raise LiveError(f"the sounddevice package is not installed: {SOUNDDEVICE_HINT}") from None
    except OSError as e:  # "PortAudio library not found"
        raise LiveError(f"no audio backend ({e}): {PORTAUDIO_HINT}") from None
    return sounddevice


def _device_arg(spec: str | None) -> int | str | None:
    if spec is None:
        return None
    return int(spec) if spec.strip().isdigit() else spec


def _query(sd: Any, spec: str | None, kind: str) -> dict[str, Any]:
    """Device info for ``spec`` (index, name substring or None = default) of ``kind``."""
    try:
        info: dict[str, Any] = dict(sd.query_devices(_device_arg(spec), kind))
    except (ValueError, sd.PortAudioError) as e:
        what = f"'{spec}'" if spec is not None else "(default)"
        raise LiveError(f"no {kind} device {what}: {' '.join(str(e).split())}; see "
                        "`flowdec live --list-devices`, or use --"
                        f"{kind}-file instead") from None
    if int(info.get(f"max_{kind}_channels", 0)) < 1:
        raise LiveError(f"device {info['index']} ({info['name']}) has no {kind} channels; see "
                        "`flowdec live --list-devices`")
    return info


def list_devices() -> str:
    """The device table of ``sounddevice`` (``>`` default input, ``<`` default output), or a
    line saying that PortAudio found none and what to do instead."""
    sd = import_sounddevice()
    table = str(sd.query_devices()).rstrip()
    if table:
        return table
    return ("no sound devices found (PortAudio sees none on this machine); use --input-file "
            "and --output-file instead, or start a sound server (scripts/pulse_null_sink.sh "
            "starts a headless PulseAudio)")


# -- file stand-ins for devices --------------------------------------------------------------
class _FileSource:
    """A whole input file in memory, padded with ``tail`` samples of silence; :meth:`take`
    returns views (no allocation in the audio path)."""

    def __init__(self, audio: np.ndarray, tail: int, block: int) -> None:
        c, n = int(audio.shape[0]), int(audio.shape[1])
        self.length = n
        self.end = n + tail  # samples to feed in all (the input, then the latency flush)
        self.buf = np.zeros((c, self.end + block), np.float32)
        self.buf[:, :n] = audio
        self.zeros = np.zeros((c, block), np.float32)
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        p = self.pos
        self.pos = p + n
        return self.buf[:, p : p + n] if p + n <= self.buf.shape[1] else self.zeros[:, :n]

    @property
    def done(self) -> bool:
        return self.pos >= self.end


class _RingSink:
    """Single-producer (audio callback) single-consumer (main thread) output ring; the
    producer lets the stream write straight into the ring (copies only)."""

    def __init__(self, channels: int, capacity: int, block: int) -> None:
        self.buf = np.zeros((channels, capacity), np.float32)
        self.scratch = np.zeros((channels, block), np.float32)
        self.written = 0  # producer position (samples)
        self.read = 0  # consumer position
        self.lost = 0  # samples the consumer was too slow for

    def process(self, stream: Stream, x: np.ndarray) -> None:
        n = x.shape[1]
        cap = self.buf.shape[1]
        if self.written + n - self.read > cap:
            stream.process(x, out=self.scratch[:, :n])
            self.lost += n
            self.written += n
            return
        s = self.written % cap
        if s + n <= cap:
            stream.process(x, out=self.buf[:, s : s + n])
        else:
            y = stream.process(x, out=self.scratch[:, :n])
            k = cap - s
            self.buf[:, s:] = y[:, :k]
            self.buf[:, : n - k] = y[:, k:]
        self.written += n

    def drain(self, limit: int) -> np.ndarray:
        """Samples written since the last drain, up to absolute position ``limit``."""
        end = min(self.written, limit)
        n = end - self.read
        if n <= 0:
            return self.buf[:, :0]
        cap = self.buf.shape[1]
        s = self.read % cap
        idx = (s + np.arange(n)) % cap if s + n > cap else slice(s, s + n)
        out = self.buf[:, idx].copy()
        self.read = end
        return out


class PaceClock:
    """The clock that paces a file input: real time (seconds). A session given another
    clock runs its files at that clock's pace; tests pass one that advances only once the
    engine has caught up, so the file path's output does not depend on the machine's speed."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, stop: threading.Event) -> None:
        """Let ``seconds`` pass, or less if ``stop`` is set."""
        stop.wait(seconds)


# -- status and report -----------------------------------------------------------------------
@dataclass
class LiveStatus:
    """What the status line shows (times in seconds, bitrate in kbit/s on the wire)."""

    seconds: float  # audio time processed (host samples / rate)
    latency: float  # end to end: engine + device latencies
    engine_latency: float
    device_latency: float
    rtf: float  # worker real-time factor (recent chunks; < 1 keeps up)
    kbps: float  # bytes of packets per second of audio × 8 / 1000, all channels
    underrun_blocks: int  # callbacks that got (some) silence because the worker was late
    underrun_seconds: float
    dropped_chunks: int
    xruns: int  # PortAudio over/under-flow flags (device side) + output-file ring losses
    level: int  # degradation level of the engine (0 = full quality)

    def line(self) -> str:
        return (f"{self.seconds:7.1f} s | latency {self.latency * 1000:.0f} ms | RTF "
                f"{self.rtf:.2f} | {self.kbps:.2f} kbit/s | under-runs {self.underrun_blocks} "
                f"({self.underrun_seconds * 1000:.0f} ms) | dropped {self.dropped_chunks} | "
                f"xruns {self.xruns}" + (f" | degraded {self.level}" if self.level else ""))


@dataclass
class LiveReport:
    """The end of a session: final :class:`LiveStatus` and what was written."""

    status: LiveStatus
    sample_rate: int
    channels: int
    latency_samples: int  # the engine's, in host samples
    rtf_overall: float
    packets: int
    packet_bytes: int
    interrupted: bool
    output_file: Path | None
    packets_file: Path | None
    output_samples: int

    def summary(self) -> str:
        s = self.status
        parts = [f"live: {s.seconds:.1f} s at {self.sample_rate} Hz, {self.channels} ch",
                 f"latency {s.latency * 1000:.0f} ms (engine {s.engine_latency * 1000:.1f} ms "
                 f"= {self.latency_samples} samples + devices {s.device_latency * 1000:.1f} ms)",
                 f"RTF {self.rtf_overall:.2f}", f"{s.kbps:.2f} kbit/s on the wire "
                 f"({self.packets} packets, {self.packet_bytes} bytes)",
                 f"under-runs {s.underrun_blocks} ({s.underrun_seconds * 1000:.0f} ms)",
                 f"dropped chunks {s.dropped_chunks}", f"xruns {s.xruns}"]
        if self.output_file is not None:
            parts.append(f"-> {self.output_file}")
        if self.packets_file is not None:
            parts.append(f"packets -> {self.packets_file}")
        if self.interrupted:
            parts.append("stopped by Ctrl-C")
        return ", ".join(parts)


# -- the session -----------------------------------------------------------------------------
class LiveSession:
    """One live round trip; see the module docstring. Build it, then call :meth:`run`.

    Args:
        codec: a loaded :class:`flowdec.Codec`.
        input_device, output_device: index or name substring (None: the default device);
            ignored for a side given as a file.
        input_file, output_file: files standing in for the devices (real-time pace).
        packets_file: write the ``.fdc`` packets sent to this file (optional).
        bitrate: kbit/s per channel; nfe, postfilter, seed, chunk_ms: as for
            :class:`flowdec.Stream` (``nfe`` or ``seed`` given: the postfilter runs unless
            ``postfilter=False``).
        sample_rate: Hz; None = the input file's rate, else the input device's default, else
            the output device's, else 48000. An input file at another rate is resampled.
        channels: None = the input file's channels, else 1.
        block: host samples per callback (also the engine's ``max_block``).
        duration: stop after this many seconds of audio (None: at the input file's end + the
            latency, or Ctrl-C).
        clock: paces a file input (None: real time, :class:`PaceClock`).

    Example:
        >>> from flowdec.codec import Codec, example_clip
        >>> s = LiveSession(Codec.load(), input_file=example_clip(), output_file="out.wav",
        ...                 postfilter=False, duration=1.0)   # two files: no sound card needed
        >>> report = s.run()                                  # one second, at real-time pace
        >>> report.output_samples                             # exactly 1 s at the clip's rate
        44100
    """

    def __init__(self, codec: Codec, *, input_device: str | None = None,
                 output_device: str | None = None, input_file: str | Path | None = None,
                 output_file: str | Path | None = None, packets_file: str | Path | None = None,
                 bitrate: float = 6.0, nfe: int | None = None,
                 postfilter: bool | None = None, seed: int | None = None,
                 chunk_ms: float | None = None, sample_rate: int | None = None,
                 channels: int | None = None, block: int = DEFAULT_BLOCK,
                 duration: float | None = None, clock: PaceClock | None = None) -> None:
        from .audio import check_rate
        if duration is not None and not duration > 0:
            raise LiveError(f"--duration: expected a positive number of seconds, got {duration}")
        if not 1 <= block <= 8192:
            raise LiveError(f"--block: expected 1..8192 samples, got {block}")
        self.codec = codec
        self.input_file = Path(input_file) if input_file is not None else None
        self.output_file = Path(output_file) if output_file is not None else None
        self.packets_file = Path(packets_file) if packets_file is not None else None
        self.bitrate = bitrate
        from .stream import LIVE_NFE

        self.postfilter, self.nfe, self.seed = codec.postfilter_settings(postfilter, nfe, seed,
                                                                         LIVE_NFE)
        self.chunk_ms = chunk_ms  # None: the Stream's default for the path
        self.block, self.duration = block, duration
        self.clock = clock if clock is not None else PaceClock()
        self.sd: Any = None
        self.in_info: dict[str, Any] | None = None
        self.out_info: dict[str, Any] | None = None
        if self.input_file is None or self.output_file is None:
            self.sd = import_sounddevice()
            if self.input_file is None:
                self.in_info = _query(self.sd, input_device, "input")
            if self.output_file is None:
                self.out_info = _query(self.sd, output_device, "output")
        self.audio_in: np.ndarray | None = None
        file_rate = None
        if self.input_file is not None:
            self.audio_in, file_rate = _read_file(self.input_file)
        if sample_rate is None:
            sample_rate = file_rate
            for info in (self.in_info, self.out_info):
                if sample_rate is None and info is not None:
                    sample_rate = int(round(float(info["default_samplerate"])))
        try:
            self.sample_rate = check_rate(sample_rate or 48000)
        except ValueError as e:
            raise LiveError(f"--samplerate: {e}") from None
        if channels is None:
            channels = self.audio_in.shape[0] if self.audio_in is not None else 1
        if not 1 <= channels <= 255:
            raise LiveError(f"--channels: expected 1..255, got {channels}")
        self.channels = channels
        for info, kind in ((self.in_info, "input"), (self.out_info, "output")):
            if info is not None and channels > int(info[f"max_{kind}_channels"]):
                raise LiveError(f"{kind} device {info['index']} ({info['name']}) has only "
                                f"{info[f'max_{kind}_channels']} channels; use --channels")
        if self.audio_in is not None:
            from .audio import resample

            assert file_rate is not None
            a = resample(self.audio_in, file_rate, self.sample_rate)
            if a.shape[0] != channels:  # mix down / repeat to the session's channels
                a = np.repeat(a.mean(axis=0, keepdims=True), channels, axis=0)
            self.audio_in = np.ascontiguousarray(a, np.float32)
        self.interrupted = False

    # -- the run --------------------------------------------------------------------------
    def run(self, on_status: Callable[[LiveStatus], None] | None = None,
            interval: float = STATUS_INTERVAL) -> LiveReport:
        """Run until the input file ends, ``duration`` passes or Ctrl-C; returns the report.

        ``on_status`` is called from this (the calling) thread every ``interval`` seconds.
        """
        from .format.bitstream import FdcWriter
        from .stream import Stream

        packets: collections.deque[bytes] = collections.deque()
        stream = Stream(self.codec, bitrate=self.bitrate, nfe=self.nfe,
                        postfilter=self.postfilter, seed=self.seed, chunk_ms=self.chunk_ms,
                        worker=True, on_packet=packets.append)
        sr, c, block = self.sample_rate, self.channels, self.block
        stream.prepare(sr, block, c)
        stream.warm_up()
        self.stream = stream
        lat = stream.latency_samples
        assert stream.header is not None
        header = stream.header
        packet_seconds = float(Fraction(header.frames_per_packet) / header.frame_rate)
        limit = math.inf if self.duration is None else round(self.duration * sr)
        source = None
        if self.audio_in is not None:
            source = _FileSource(self.audio_in, lat, block)
            limit = min(limit, source.end)
        sink = None
        if self.output_file is not None:
            sink = _RingSink(c, int(OUT_RING_SECONDS * sr) + 4 * block, block)
        self.frames = 0
        self.xruns = 0
        n_packets = n_bytes = 0
        writer: FdcWriter | None = None
        out_file: Any = None
        dev: Any = None
        pacer: threading.Thread | None = None
        stop = threading.Event()
        device_latency = 0.0
        t_start = time.monotonic()

        def status() -> LiveStatus:
            st = stream.stats
            hist = st.rtf_history[-8:]
            kbps = n_bytes * 8 / 1000 / (n_packets * packet_seconds) if n_packets else 0.0
            return LiveStatus(
                seconds=self.frames / sr, latency=lat / sr + device_latency,
                engine_latency=lat / sr, device_latency=device_latency,
                rtf=sum(hist) / len(hist) if hist else 0.0, kbps=kbps,
                underrun_blocks=st.underrun_blocks, underrun_seconds=st.underrun_samples / sr,
                dropped_chunks=st.dropped_chunks,
                xruns=self.xruns + (sink.lost if sink is not None else 0), level=st.level)

        def pump() -> None:  # main thread: packets to the .fdc file, output ring to the file
            nonlocal n_packets, n_bytes
            while packets:
                p = packets.popleft()
                n_packets += 1
                n_bytes += len(p)
                if writer is not None:
                    from .format.bitstream import decode_packet

                    packet = decode_packet(header, p)[0]
                    writer.write(packet.codes, packet.gains_db)
            if sink is not None and out_file is not None:
                y = sink.drain(int(min(limit, 1 << 62)))
                if y.shape[1]:
                    out_file.write(y)

        try:
            if self.packets_file is not None:
                writer = FdcWriter(_prepare(self.packets_file, (".fdc",)), header)
            if self.output_file is not None:
                from .audio.io import WRITE_EXTENSIONS, AudioWriter

                out_file = AudioWriter(_prepare(self.output_file, WRITE_EXTENSIONS), sr, c)
            dev = self._open_device(stream, source, sink)
            if dev is not None:
                dev.start()
                lat_dev = dev.latency
                device_latency = float(sum(lat_dev) if isinstance(lat_dev, tuple) else lat_dev)
            else:
                assert source is not None and sink is not None
                pacer = threading.Thread(target=self._pace, args=(stream, source, sink, stop),
                                         name="flowdec-live-clock", daemon=True)
                pacer.start()
            t_start = time.monotonic()
            next_status = t_start + interval
            try:
                while self.frames < limit and not (source is not None and source.done):
                    time.sleep(0.02)
                    pump()
                    if pacer is not None and not pacer.is_alive():
                        break
                    now = time.monotonic()
                    if on_status is not None and now >= next_status:
                        on_status(status())
                        next_status = now + interval
                if self.out_info is not None and not self.interrupted:
                    time.sleep(min(device_latency, 2.0))  # let the device play what it holds
            except KeyboardInterrupt:
                self.interrupted = True
            stop.set()
            if dev is not None:
                dev.stop()
                dev.close()
                dev = None
            if pacer is not None:
                pacer.join()
            stream.close()
            pump()
            final = status()
            if writer is not None:
                writer.header = dataclasses.replace(
                    writer.header, original_length=int(min(self.frames, limit)))
                writer.close()
            written = 0
            if out_file is not None:
                written = out_file.samples
                out_file.__exit__(None, None, None)
                out_file = None
        except BaseException as e:
            stop.set()
            if dev is not None:
                dev.abort()
                dev.close()
            if pacer is not None:
                pacer.join()
            stream.close()
            if writer is not None:
                writer.abort()
            if out_file is not None:
                out_file.__exit__(type(e), e, None)
            raise
        return LiveReport(final, sr, c, lat, stream.stats.rtf, n_packets, n_bytes,
                          self.interrupted, self.output_file, self.packets_file, written)

    def _open_device(self, stream: Stream, source: _FileSource | None,
                     sink: _RingSink | None) -> Any:
        """The sounddevice stream whose callback drives the engine (None: files only)."""
        sd = self.sd
        if self.in_info is None and self.out_info is None:
            return None
        process = stream.process
        kw: dict[str, Any] = {"samplerate": self.sample_rate, "blocksize": self.block,
                              "channels": self.channels, "dtype": "float32"}

        # The callbacks only call stream.process (which copies) and count status flags.
        def duplex(indata: np.ndarray, outdata: np.ndarray, frames: int, t: Any,
                   status: Any) -> None:
            if status:
                self.xruns += 1
            process(indata.T, out=outdata.T)
            self.frames += frames

        def capture(indata: np.ndarray, frames: int, t: Any, status: Any) -> None:
            if status:
                self.xruns += 1
            assert sink is not None
            sink.process(stream, indata.T)
            self.frames += frames

        def playback(outdata: np.ndarray, frames: int, t: Any, status: Any) -> None:
            if status:
                self.xruns += 1
            assert source is not None
            process(source.take(frames), out=outdata.T)
            self.frames += frames

        try:
            if self.in_info is not None and self.out_info is not None:
                return sd.Stream(device=(self.in_info["index"], self.out_info["index"]),
                                 callback=duplex, **kw)
            if self.in_info is not None:
                return sd.InputStream(device=self.in_info["index"], callback=capture, **kw)
            assert self.out_info is not None
            return sd.OutputStream(device=self.out_info["index"], callback=playback, **kw)
        except sd.PortAudioError as e:
            raise LiveError(f"cannot open the audio device at {self.sample_rate} Hz, "
                            f"{self.channels} ch ({' '.join(str(e).split())}); try --samplerate "
                            "or --channels, or see `flowdec live --list-devices`") from None

    def _pace(self, stream: Stream, source: _FileSource, sink: _RingSink,
              stop: threading.Event) -> None:
        """File in, file out: call the engine like an audio callback, at the clock's pace."""
        sr, block, clock = self.sample_rate, self.block, self.clock
        t0 = clock.now()
        while not stop.is_set() and not source.done:
            sink.process(stream, source.take(block))
            self.frames += block
            wait = t0 + self.frames / sr - clock.now()
            if wait > 0:
                clock.wait(wait, stop)


def _prepare(path: Path, allowed: tuple[str, ...]) -> Path:
    from .audio.io import prepare_output
    from .errors import FlowdecError

    try:
        return prepare_output(path, allowed)
    except FlowdecError as e:
        raise LiveError(str(e)) from None


def _read_file(path: Path) -> tuple[np.ndarray, int]:
    from .audio.io import AudioReader
    from .errors import FlowdecError

    try:
        with AudioReader(path, chunk_seconds=10.0) as f:
            parts = list(f.chunks())
            return np.concatenate(parts, axis=1).astype(np.float32, copy=False), f.rate
    except FlowdecError as e:
        raise LiveError(str(e)) from None
