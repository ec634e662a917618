"""The ``flowdec`` command: end to end through ``python -m flowdec``, errors in-process."""

from __future__ import annotations

import argparse
import dataclasses
import io
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from pedalboard.io import AudioFile

from flowdec import cli, files
from flowdec.codec import Bitstream, Codec
from flowdec.format.bitstream import HEADER_SIZE, FdcReader, encode_packet
from flowdec.postfilter import Postfilter


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path) -> Path:
    """These tests need a model, not the shipped model's quality: the tiny random one."""
    return tiny_model_dir


@pytest.fixture(scope="module")
def codec(model_dir: Path) -> Codec:
    return Codec(model_dir, threads=2)


def make_audio(rate: int, channels: int, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(rate * seconds))) / rate
    f = 330.0 * (1 + np.arange(channels))[:, None]
    x = 0.3 * np.sin(2 * np.pi * f * t) + 0.03 * rng.standard_normal((channels, t.size))
    return x.astype(np.float32)


def write_audio(path: Path, audio: np.ndarray, rate: int) -> Path:
    with AudioFile(str(path), "w", rate, audio.shape[0]) as f:
        f.write(audio)
    return path


def read_audio(path: Path) -> tuple[np.ndarray, float]:
    with AudioFile(str(path)) as f:
        return f.read(f.frames), f.samplerate


def flowdec(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowdec", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_output_to_a_closed_pipe_ends_quietly(model_dir: Path, codec: Codec,
                                               tmp_path: Path) -> None:
    """``flowdec info x.fdc | head``: when the reader of stdout has gone, the command stops
    with the shell's status for SIGPIPE (141) and no error message or traceback."""
    write_audio(tmp_path / "in.wav", make_audio(48000, 1, 0.5), 48000)
    m = ("--model", str(model_dir))
    assert flowdec("encode", "in.wav", "x.fdc", *m, cwd=tmp_path).returncode == 0
    p = subprocess.Popen([sys.executable, "-m", "flowdec", "info", "x.fdc", *m], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # before the interpreter has even started: every write meets EPIPE
    with p.stderr:
        err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141
    assert err == ""


def test_cli_end_to_end(model_dir: Path, codec: Codec, tmp_path: Path) -> None:
    m = ("--model", model_dir, "--threads", "2")
    write_audio(tmp_path / "in.flac", make_audio(44100, 2, 1.2), 44100)

    r = flowdec("encode", "in.flac", "x.fdc", "-b", "4.5", *m, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("encoded in.flac -> x.fdc: 1.2 s, 2 ch, 44100 Hz, 4.5 kbit/s")
    assert "x real time" in r.stdout and r.stdout.count("\n") == 1

    r = flowdec("info", "x.fdc", *m, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for text in ("matches the installed model", "4.5 kbit/s per channel", "44100 Hz",
                 "channels:        2", "6 codebooks x 10 bits", "complete"):
        assert text in r.stdout

    # global options after the verb too; the postfilter with a fixed seed is reproducible
    r = flowdec("decode", "x.fdc", "a.wav", "--postfilter", "--nfe", "2", "--seed", "3",
                "--solver", "euler", *m, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "postfilter nfe 2 seed 3" in r.stdout
    a, rate = read_audio(tmp_path / "a.wav")
    assert rate == 44100 and a.shape == (2, 52920) and np.isfinite(a).all()
    ref = codec.decode(Bitstream.load(tmp_path / "x.fdc"), nfe=2, seed=3, postfilter=True,
                       solver_name="euler")
    np.testing.assert_array_equal(a, ref)

    r = flowdec(*m, "--quiet", "roundtrip", "in.flac", "rt.flac", "-b", "4.5",
                "--no-postfilter", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    rt, rate = read_audio(tmp_path / "rt.flac")
    ref = codec.roundtrip(read_audio(tmp_path / "in.flac")[0], 44100, 4.5, postfilter=False)
    assert rate == 44100 and rt.shape == ref.shape
    assert float(np.abs(rt - ref).max()) < 1e-5  # 24-bit flac quantisation

    # the postfilter alone on the plain decoded file: as Postfilter.enhance on the whole clip
    # (1.2 s is one postfilter window, so equal up to float32 WAV storage)
    r = flowdec("decode", "x.fdc", "plain.wav", "--no-postfilter", *m, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = flowdec("enhance", "plain.wav", "e.wav", "--nfe", "2", "--seed", "4", *m, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("enhanced plain.wav -> e.wav: 1.2 s, 2 ch, 44100 Hz, "
                               "postfilter nfe 2 seed 4"), r.stdout
    e, rate = read_audio(tmp_path / "e.wav")
    plain = read_audio(tmp_path / "plain.wav")[0]
    ref = Postfilter(model_dir, threads=2).enhance(plain, nfe=2, seed=4, sample_rate=44100)
    assert rate == 44100 and e.shape == plain.shape == ref.shape
    np.testing.assert_allclose(e, ref, atol=1e-6)

    tree = tmp_path / "music"
    (tree / "live" / "day1").mkdir(parents=True)
    write_audio(tree / "intro.wav", make_audio(48000, 1, 0.5), 48000)
    write_audio(tree / "live" / "day1" / "song.ogg", make_audio(32000, 2, 0.6), 32000)
    r = flowdec("bounce", "music", "-o", "out", "--format", "flac", "--no-postfilter", *m,
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.*")
                  ) == ["intro.flac", "live/day1/song.flac"]
    assert r.stdout.splitlines()[-1].startswith("bounced 2 files")


def test_cli_level_bands(model_dir: Path, codec: Codec, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """``--level-bands 24`` reaches the file (info shows the band gains), decodes like the
    library, and a bad value is refused before anything is written."""
    m = ["--model", str(model_dir)]
    x = make_audio(44100, 1, 2.3)
    write_audio(tmp_path / "in.wav", x, 44100)
    code, _, err = run_main([*m, "encode", str(tmp_path / "in.wav"), str(tmp_path / "b.fdc"),
                             "-b", "3", "--level-bands", "24"], capsys)
    assert code == 0, err
    code, out, _ = run_main([*m, "info", str(tmp_path / "b.fdc")], capsys)
    assert code == 0 and "band gains:      24 ERB bands per 1 s per channel; min" in out
    code, _, err = run_main([*m, "decode", str(tmp_path / "b.fdc"), str(tmp_path / "b.wav"),
                             "--no-postfilter"], capsys)
    assert code == 0, err
    ref = codec.decode(Bitstream.load(tmp_path / "b.fdc"), postfilter=False)
    np.testing.assert_array_equal(read_audio(tmp_path / "b.wav")[0], ref)
    with pytest.raises(SystemExit):
        cli.main([*m, "encode", str(tmp_path / "in.wav"), str(tmp_path / "c.fdc"),
                  "--level-bands", "300"])
    assert "expected a whole number 0..255, got '300'" in capsys.readouterr().err
    assert not (tmp_path / "c.fdc").exists()


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_errors_are_one_line(model_dir: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    m = ["--model", str(model_dir)]
    (tmp_path / "x.wav").write_text("this is text, not audio")
    write_audio(tmp_path / "ok.wav", make_audio(48000, 1, 4.5), 48000)
    assert run_main([*m, "encode", str(tmp_path / "ok.wav"), str(tmp_path / "ok.fdc")],
                    capsys)[0] == 0
    data = bytearray((tmp_path / "ok.fdc").read_bytes())
    data[100] ^= 0x55  # inside packet 0's payload
    (tmp_path / "bad.fdc").write_bytes(bytes(data))
    (tmp_path / "cut.fdc").write_bytes(bytes(data[:40]))  # inside the header
    before = sorted(p.name for p in tmp_path.iterdir())

    cases = [
        (["encode", "missing.wav", "o.fdc"], "missing.wav: no such file"),
        (["encode", "x.wav", "o.fdc"], "x.wav: cannot read audio"),
        (["decode", "bad.fdc", "o.wav"], "packet #0 (index field 0) at byte offset 61 is corrupt"),
        (["decode", "cut.fdc", "o.wav"], "truncated inside the header"),
        (["decode", "ok.wav", "o.wav"], "not a flowdec .fdc file"),
        (["roundtrip", "ok.wav", "o.wav", "-b", "5"], "bitrate 5 kbit/s is not available"),
        (["roundtrip", "ok.wav", str(tmp_path)], "is a folder; give a file name"),
        (["info", "x.wav"], "not a flowdec .fdc file"),
        (["enhance", "x.wav", "o.wav"], "x.wav: cannot read audio"),
        (["enhance", "ok.wav", "o.wav", "--nfe", "3"], "nfe must be a positive even number"),
    ]
    for args, message in cases:
        args = [str(tmp_path / a) if a.endswith((".wav", ".fdc")) else a for a in args]
        code, out, err = run_main([*m, *args], capsys)
        assert code == 1, (args, err)
        assert out == "" and err.count("\n") == 1 and err.startswith("flowdec: error: "), err
        assert message in err
    code, _, err = run_main(["--model", str(tmp_path / "nowhere"), "info",
                             str(tmp_path / "ok.fdc")], capsys)
    assert code == 1 and "nowhere" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output files

    for usage in (["encode", "a.wav"], ["decode", "a", "b", "--nfe", "0"], ["frobnicate"]):
        with pytest.raises(SystemExit) as e:
            cli.main(usage)
        assert e.value.code == 2
    capsys.readouterr()


def test_cli_ctrl_c_exits_130_without_output(model_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the middle of writing: exit 130, no file under the real name or a temp."""
    write_audio(tmp_path / "in.wav", make_audio(48000, 1, 3.0), 48000)
    real = files.roundtrip_file

    def interrupted(*args: object, **kw: object) -> files.FileResult:
        def stop(done: float, total: float) -> None:
            raise KeyboardInterrupt

        return real(*args, **{**kw, "progress": stop, "chunk_seconds": 1.0})  # type: ignore

    monkeypatch.setattr(files, "roundtrip_file", interrupted)
    code, out, err = run_main(["--model", str(model_dir), "roundtrip", str(tmp_path / "in.wav"),
                               str(tmp_path / "out.wav"), "--no-postfilter"], capsys)
    assert code == 130 and "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One seeded mutation of a .fdc file: cut, flipped bytes, a header with random field
    bytes (and a valid CRC), a packet with random codes and gains (valid framing and CRC),
    a duplicated packet, or bytes inserted or removed."""
    b = bytearray(data)
    kind = int(rng.integers(6))
    if kind == 0:
        return bytes(b[: int(rng.integers(0, len(b)))])
    if kind == 1:
        for at in rng.integers(0, len(b), int(rng.integers(1, 5))):
            b[at] ^= int(rng.integers(1, 256))
        return bytes(b)
    if kind == 2:  # fields are bytes 12..56 of the 61-byte header, its CRC-32 the last 4
        for at in rng.integers(12, HEADER_SIZE - 4, int(rng.integers(1, 4))):
            b[at] = int(rng.integers(256))
        b[HEADER_SIZE - 4 : HEADER_SIZE] = struct.pack("<I", zlib.crc32(b[: HEADER_SIZE - 4]))
        return bytes(b)
    if kind == 5:
        at = int(rng.integers(0, len(b)))
        if rng.integers(2):
            return bytes(b[:at] + b[at + int(rng.integers(1, 64)) :])
        return bytes(b[:at] + rng.integers(0, 256, int(rng.integers(1, 64)), np.uint8).tobytes()
                     + b[at:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with FdcReader(io.BytesIO(data)) as r:
            h, packets = r.header, list(r)
    i = int(rng.integers(len(packets)))
    if kind == 3:
        p = packets[i]
        p.codes = rng.integers(0, 2**h.bits_per_code, p.codes.shape).astype(np.uint16)
        if p.gains_db is not None:
            p.gains_db = (rng.integers(-127, 128, p.gains_db.shape) * 0.25).astype(np.float32)
        if p.band_gains_db is not None:
            p.band_gains_db = (rng.integers(-8, 8, p.band_gains_db.shape) * 3.0
                               ).astype(np.float32)
    else:  # kind 4
        packets.insert(i, packets[i])
    return bytes(b[:HEADER_SIZE]) + b"".join(encode_packet(h, p) for p in packets)


def test_fuzzed_files_decode_or_give_one_line_errors(codec: Codec, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    """flowdec decode on 300 seeded mutations of .fdc files (level gains; band gains in
    stereo; several packets): each decodes (perhaps with a warning) or is refused with one
    'flowdec: error:' line; nothing escapes as a traceback."""
    for name, module in list(sys.modules.items()):  # the loaded codec, wherever the CLI looks
        if (name == "flowdec.cli" or name.startswith("flowdec.cli.")) and \
                hasattr(module, "load_codec"):
            monkeypatch.setattr(module, "load_codec", lambda args: codec)
    bases = []
    for name, ch, bands in (("gains", 1, 0), ("bands", 2, 24)):
        wav = write_audio(tmp_path / f"{name}.wav", make_audio(48000, ch, 1.2), 48000)
        files.encode_file(codec, wav, tmp_path / f"{name}.fdc", progress=False,
                          level_bands=bands)
        bases.append((tmp_path / f"{name}.fdc").read_bytes())
    s = Bitstream.load(tmp_path / "bands.fdc")  # the same in packets of 0.4 s
    assert s.gains_db is not None and s.band_gains_db is not None
    h = dataclasses.replace(s.header, frames_per_packet=30, frames_per_gain=15)
    blocks = h.gain_blocks(s.codes.shape[2])
    Bitstream(h, s.codes, np.repeat(s.gains_db, 5, axis=1)[:, :blocks],
              np.repeat(s.band_gains_db, 5, axis=1)[:, :blocks]).save(tmp_path / "packets.fdc")
    bases.append((tmp_path / "packets.fdc").read_bytes())
    rng = np.random.default_rng(21)
    m, out = tmp_path / "m.fdc", tmp_path / "m.wav"
    outcomes = {0: 0, 1: 0}
    for i in range(300):
        m.write_bytes(_mutate(bases[i % len(bases)], rng))
        code, _, err = run_main(["decode", str(m), str(out), "--no-postfilter", "-q"], capsys)
        lines = err.splitlines()
        errors = [line for line in lines if line.startswith("flowdec: error: ")]
        assert code in outcomes, (i, code, err)
        assert all(line.startswith(("flowdec: error: ", "flowdec: warning: ")) for line in lines)
        assert len(errors) == code and out.exists() == (code == 0), (i, err)
        outcomes[code] += 1
        out.unlink(missing_ok=True)
    assert min(outcomes.values()) > 30, outcomes  # both outcomes are exercised


TERM_AFTER_FIRST_CHUNK = """
import os, signal, sys
from flowdec import cli, files
update = files._Progress.update
def term(self, done):  # SIGTERM as soon as the first chunk is written
    update(self, done)
    os.kill(os.getpid(), signal.SIGTERM)
files._Progress.update = term
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("verb", [["encode", "in.wav", "out.fdc"],
                                  ["roundtrip", "in.wav", "out.wav"],
                                  ["bounce", "in.wav", "in2.wav", "-o", "out"]])
def test_sigterm_leaves_no_temporary_file(model_dir: Path, tmp_path: Path,
                                          verb: list[str]) -> None:
    """SIGTERM used to end the process on the spot, leaving .NAME.xxxx.tmp files; now it
    unwinds like Ctrl-C: nothing is left, and the exit status is 143."""
    write_audio(tmp_path / "in.wav", make_audio(48000, 1, 3.0), 48000)
    write_audio(tmp_path / "in2.wav", make_audio(48000, 1, 3.0), 48000)
    r = subprocess.run([sys.executable, "-c", TERM_AFTER_FIRST_CHUNK, *verb, "--model",
                        str(model_dir), "--threads", "1", "--no-postfilter"
                        if verb[0] != "encode" else "-q"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 143, r.stderr
    assert r.stderr.strip() == "flowdec: terminated by SIGTERM (no partial output was kept)"
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["in.wav", "in2.wav"]


def test_postfilter_default_follows_the_model_card(model_dir: Path, tmp_path: Path) -> None:
    """A card whose evaluation found the postfilter worse makes the plain codec the default;
    --postfilter / postfilter=True still run it."""
    import json
    import shutil

    from flowdec.stream import Stream

    m = tmp_path / "model"
    shutil.copytree(model_dir, m)
    card = json.loads((m / "model_card.json").read_text())
    card["postfilter"]["recommended"] = False
    (m / "model_card.json").write_text(json.dumps(card))
    c = Codec(m, threads=2)
    assert c.has_postfilter and not c.postfilter_recommended
    assert Codec(model_dir, threads=1).use_postfilter(None) == bool(
        json.loads((model_dir / "model_card.json").read_text())["postfilter"]
        .get("recommended", False))
    x = make_audio(48000, 1, 0.5)
    plain = c.roundtrip(x, 48000, bitrate=6.0, postfilter=False)
    np.testing.assert_array_equal(c.roundtrip(x, 48000, bitrate=6.0), plain)
    assert not np.array_equal(c.roundtrip(x, 48000, bitrate=6.0, postfilter=True, seed=1), plain)
    assert Stream(c).postfilter is False and Stream(c, postfilter=True).postfilter is True

    write_audio(tmp_path / "in.wav", x, 48000)
    r = flowdec("roundtrip", "in.wav", "a.wav", "--model", m, cwd=tmp_path)
    assert r.returncode == 0 and "no postfilter" in r.stdout, r.stdout + r.stderr
    r = flowdec("roundtrip", "in.wav", "b.wav", "--postfilter", "--nfe", "2", "--seed", "1",
                "--model", m, cwd=tmp_path)
    assert r.returncode == 0 and "postfilter nfe 2 seed 1" in r.stdout, r.stdout + r.stderr
    r = flowdec("roundtrip", "in.wav", "c.wav", "--postfilter", "--no-postfilter", "--model", m,
                cwd=tmp_path)
    assert r.returncode == 2 and "not allowed with" in r.stderr


def test_nfe_and_seed_ask_for_the_postfilter(model_dir: Path, codec: Codec, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With the postfilter off by default, --nfe and --seed were silently ignored; now giving
    either runs it (unless --no-postfilter), with seed 0 and NFE 6 when not given."""
    if not codec.has_postfilter:
        pytest.skip("the model has no postfilter")
    monkeypatch.setattr(Codec, "postfilter_recommended", property(lambda self: False))
    write_audio(tmp_path / "in.wav", make_audio(48000, 1, 0.3), 48000)
    code, out, err = run_main(["--model", str(model_dir), "--threads", "2", "roundtrip",
                               str(tmp_path / "in.wav"), str(tmp_path / "a.wav"), "--seed", "5"],
                              capsys)
    assert code == 0 and "postfilter nfe 6 seed 5" in out, out + err
    files.encode_file(codec, tmp_path / "in.wav", tmp_path / "x.fdc", progress=False)
    r = files.decode_file(codec, tmp_path / "x.fdc", tmp_path / "b.wav", nfe=2, progress=False)
    assert (r.postfilter, r.nfe, r.seed) == (True, 2, 0)
    r = files.decode_file(codec, tmp_path / "x.fdc", tmp_path / "c.wav", progress=False)
    assert not r.postfilter and "no postfilter" in r.summary()
    r = files.roundtrip_file(codec, tmp_path / "in.wav", tmp_path / "d.wav", nfe=2,
                             postfilter=False, progress=False)
    assert not r.postfilter
    b = files.bounce(codec, [tmp_path / "in.wav"], tmp_path / "out", seed=0, progress=False)
    assert b.results[0].postfilter and b.results[0].seed == 0


def test_solver_asks_for_the_postfilter_and_settings_without_it_say_so(
        model_dir: Path, codec: Codec, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--solver was silently ignored with the postfilter off by default: it is a postfilter
    setting like --nfe; settings given with --no-postfilter get a note, not silence."""
    if not codec.has_postfilter:
        pytest.skip("the model has no postfilter")
    monkeypatch.setattr(Codec, "postfilter_recommended", property(lambda self: False))
    write_audio(tmp_path / "in.wav", make_audio(48000, 1, 0.3), 48000)
    m = ["--model", str(model_dir), "--threads", "2"]
    code, out, err = run_main([*m, "roundtrip", str(tmp_path / "in.wav"),
                               str(tmp_path / "a.wav"), "--solver", "euler"], capsys)
    assert code == 0 and "postfilter nfe 6" in out, out + err
    code, out, err = run_main([*m, "roundtrip", str(tmp_path / "in.wav"),
                               str(tmp_path / "b.wav"), "--no-postfilter", "--nfe", "4",
                               "--solver", "euler"], capsys)
    assert code == 0 and "no postfilter" in out, out + err
    assert "--nfe --solver have no effect with --no-postfilter" in err, err


def test_the_default_seed_is_0_everywhere(model_dir: Path, codec: Codec, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """decode/roundtrip/enhance picked a random seed, demo/live/the effect 0: now 0 in all."""
    from flowdec.effect import FlowDecEffect
    from flowdec.pipeline import postfilter
    from flowdec.stream import Stream

    assert (cli.DEFAULT_NFE, cli.DEFAULT_SEED) == (postfilter.DEFAULT_NFE, postfilter.DEFAULT_SEED)
    assert postfilter.DEFAULT_SEED == 0
    parser = cli.build_parser()
    for verb in ("decode", "roundtrip", "bounce", "enhance", "demo", "live"):
        args = parser.parse_args([verb, "a", "b"] if verb in ("decode", "roundtrip", "enhance")
                                 else [verb, "x", "-o", "o"] if verb == "bounce" else [verb])
        assert args.seed is None and args.nfe is None, verb  # None: the library's default
    if not codec.has_postfilter:
        return
    assert Stream(codec, postfilter=True).seed == 0
    assert FlowDecEffect(codec=codec, postfilter=True).stream.seed == 0
    write_audio(tmp_path / "in.wav", make_audio(48000, 1, 0.3), 48000)
    r = files.roundtrip_file(codec, tmp_path / "in.wav", tmp_path / "a.wav", postfilter=True,
                             nfe=2, progress=False)
    assert r.seed == 0
    pf = Postfilter(model_dir, threads=2)
    r = files.enhance_file(pf, tmp_path / "a.wav", tmp_path / "e.wav", nfe=2, progress=False)
    assert r.seed == 0
    y = read_audio(tmp_path / "a.wav")[0]
    np.testing.assert_array_equal(pf.enhance(y, nfe=2), pf.enhance(y, nfe=2, seed=0))


def test_audio_verbs_on_a_fdc_file_point_to_decode(model_dir: Path, codec: Codec,
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``flowdec roundtrip x.fdc`` said only "cannot read audio"."""
    write_audio(tmp_path / "in.wav", make_audio(48000, 1, 0.3), 48000)
    files.encode_file(codec, tmp_path / "in.wav", tmp_path / "x.fdc", progress=False)
    (tmp_path / "x.bin").write_bytes((tmp_path / "x.fdc").read_bytes())
    code, out, err = run_main(["--model", str(model_dir), "roundtrip", str(tmp_path / "x.fdc"),
                               str(tmp_path / "o.wav")], capsys)
    assert code == 1 and err.count("\n") == 1 and "cannot read audio" in err
    assert f"it is a .fdc bitstream: decode it with `flowdec decode {tmp_path / 'x.fdc'}" in err
    with pytest.raises(files.FlowdecError, match="flowdec decode"):
        files.encode_file(codec, tmp_path / "x.bin", tmp_path / "y.fdc")


def test_help_texts_have_no_rst_markup() -> None:
    parser = cli.build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    texts = {"flowdec": parser.format_help()}
    texts.update((name, p.format_help()) for name, p in verbs.choices.items())
    for name, text in texts.items():
        for markup in ("``", ":class:", ":func:", ":meth:", ":data:", ":mod:"):
            assert markup not in text, f"flowdec {name} --help shows {markup}"


def test_dir_lists_the_lazy_public_names() -> None:
    r = subprocess.run([sys.executable, "-c", "import flowdec; print(' '.join(dir(flowdec)))"],
                       capture_output=True, text=True, timeout=60)
    names = set(r.stdout.split())
    assert {"Codec", "Stream", "FlowDecEffect", "Pipeline", "Postfilter", "__version__"} <= names
