"""Record the codec's outputs on the example clip, or compare them with a recording.

A refactoring guard, not a benchmark: every path (clip encode/decode at several chunk sizes,
the file verbs, :class:`flowdec.Stream` at two rates with a fixed block pattern, the
postfilter with a fixed seed, the pedalboard effect) writes its output arrays to one ``.npz``
per case; ``compare`` recomputes them and reports every array that is not bit-identical
(``np.array_equal``). Outputs are only comparable on one machine with one onnxruntime build
and thread count, so recordings are not kept in the repository.

    python benchmarks/record_outputs.py record /tmp/flowdec-outputs      # before a change
    python benchmarks/record_outputs.py compare /tmp/flowdec-outputs     # after it
    python benchmarks/record_outputs.py compare /tmp/flowdec-outputs --only stream
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

import flowdec
from flowdec.codec import Codec, example_clip
from flowdec.files import decode_file, encode_file, enhance_file, roundtrip_file
from flowdec.format.bitstream import FILE_FRAMES_PER_GAIN, LIVE_FRAMES_PER_GAIN
from flowdec.postfilter import Postfilter

Arrays = dict[str, np.ndarray]
BLOCKS = (512, 37, 1024, 300, 1)


def _clip() -> tuple[np.ndarray, int]:
    x, sr = sf.read(example_clip(), dtype="float32", always_2d=True)
    return np.ascontiguousarray(x.T), sr


def case_encode(codec: Codec) -> Arrays:
    x, sr = _clip()
    out: Arrays = {}
    for cs in (10.0, 1.0, 0.25):
        for fpg, bands in ((FILE_FRAMES_PER_GAIN, 24), (FILE_FRAMES_PER_GAIN, 0), (0, 0),
                           (LIVE_FRAMES_PER_GAIN, 0)):
            s = codec.encode(x, sr, 6.0, chunk_seconds=cs, frames_per_gain=fpg,
                             level_bands=bands)
            key = f"cs{cs}_g{fpg}_b{bands}"
            out[key + "_codes"] = s.codes
            if s.gains_db is not None:
                out[key + "_gains"] = s.gains_db
            if s.band_gains_db is not None:
                out[key + "_bands"] = s.band_gains_db
    return out


def case_decode(codec: Codec) -> Arrays:
    x, sr = _clip()
    out: Arrays = {}
    for fpg, bands in ((FILE_FRAMES_PER_GAIN, 24), (FILE_FRAMES_PER_GAIN, 0), (0, 0)):
        s = codec.encode(x, sr, 4.5, frames_per_gain=fpg, level_bands=bands)
        for cs in (10.0, 1.0, 0.25):
            out[f"plain_g{fpg}_b{bands}_cs{cs}"] = codec.decode(s, postfilter=False,
                                                                chunk_seconds=cs)
    s = codec.encode(x, sr, 6.0, level_bands=24)
    if codec.has_postfilter:
        for cs in (10.0, 1.5):
            out[f"post_cs{cs}"] = codec.decode(s, postfilter=True, nfe=4, seed=3,
                                               chunk_seconds=cs)
    mono = codec.encode(x[0], sr, 3.0)
    out["mono"] = codec.decode(mono, postfilter=False)
    return out


def _stream(codec: Codec, x: np.ndarray, sr: int, **kw: object) -> Arrays:
    packets: list[bytes] = []
    s = flowdec.Stream(codec, worker=False, on_packet=packets.append, **kw)  # type: ignore[arg-type]
    s.prepare(sr, max(BLOCKS), x.shape[0])
    full = np.concatenate([x, np.zeros((x.shape[0], s.latency_samples), np.float32)], axis=1)
    parts, i, j = [], 0, 0
    while i < full.shape[1]:
        n = min(BLOCKS[j % len(BLOCKS)], full.shape[1] - i)
        parts.append(s.process(full[:, i : i + n]))
        i, j = i + n, j + 1
    return {"out": np.concatenate(parts, axis=1), "latency": np.array(s.latency_samples),
            "packets": np.frombuffer(b"".join(packets), np.uint8)}


def case_stream(codec: Codec) -> Arrays:
    x, sr = _clip()
    out: Arrays = {}
    for rate in (sr, 48000):
        xr = flowdec.audio.resample(x, sr, rate)[:, : rate * 3]
        for post in (False, True):
            if post and not codec.has_postfilter:
                continue
            kw: dict[str, object] = {"postfilter": post}
            if post:
                kw.update(nfe=4, seed=2)
            r = _stream(codec, xr, rate, **kw)
            out.update({f"r{rate}_p{int(post)}_{k}": v for k, v in r.items()})
    return out


def case_effect(codec: Codec) -> Arrays:
    x, sr = _clip()
    fx = flowdec.FlowDecEffect(codec=codec, postfilter=False)
    return {"whole": fx(x[:, : sr * 2], sr, buffer_size=700)}


def case_postfilter(codec: Codec) -> Arrays:
    if not codec.has_postfilter:
        return {}
    x, sr = _clip()
    y = codec.roundtrip(x[:, : sr * 3], sr, postfilter=False)
    pf = Postfilter.load(codec.folder, threads=2)
    return {"enhance": pf.enhance(y, nfe=4, seed=5, sample_rate=sr),
            "enhance48": pf.enhance(flowdec.audio.resample(y, sr, 48000)[0], nfe=2, seed=1)}


def case_files(codec: Codec) -> Arrays:
    out: Arrays = {}
    with tempfile.TemporaryDirectory() as d:
        t = Path(d)
        clip = example_clip()
        for cs in (10.0, 1.0):
            encode_file(codec, clip, t / "a.fdc", 6.0, chunk_seconds=cs, level_bands=24)
            out[f"fdc_cs{cs}"] = np.frombuffer((t / "a.fdc").read_bytes(), np.uint8)
            decode_file(codec, t / "a.fdc", t / "a.wav", postfilter=False, chunk_seconds=cs)
            out[f"wav_cs{cs}"] = sf.read(t / "a.wav", dtype="float32")[0]
            roundtrip_file(codec, clip, t / "b.flac", 3.0, postfilter=False, chunk_seconds=cs)
            out[f"flac_cs{cs}"] = sf.read(t / "b.flac", dtype="int32")[0]
        if codec.has_postfilter:
            decode_file(codec, t / "a.fdc", t / "p.wav", nfe=2, seed=4)
            out["post_wav"] = sf.read(t / "p.wav", dtype="float32")[0]
            enhance_file(Postfilter.load(codec.folder, threads=2), t / "a.wav", t / "e.wav",
                         nfe=2, seed=6, chunk_seconds=1.0)
            out["enhance_wav"] = sf.read(t / "e.wav", dtype="float32")[0]
    return out


CASES: dict[str, Callable[[Codec], Arrays]] = {
    "encode": case_encode, "decode": case_decode, "stream": case_stream,
    "effect": case_effect, "postfilter": case_postfilter, "files": case_files,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("record", "compare"))
    ap.add_argument("folder", type=Path)
    ap.add_argument("--only", nargs="*", choices=sorted(CASES), default=sorted(CASES))
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    codec = Codec(a.model, threads=2)
    a.folder.mkdir(parents=True, exist_ok=True)
    bad = 0
    for name in a.only:
        got = CASES[name](codec)
        path = a.folder / f"{name}.npz"
        if a.action == "record":
            np.savez(path, **got)  # type: ignore[arg-type]
            print(f"{name}: recorded {len(got)} arrays")
            continue
        ref = dict(np.load(path))
        for key in sorted(set(ref) | set(got)):
            if key not in ref or key not in got:
                print(f"{name}/{key}: only in {'recording' if key in ref else 'this run'}")
                bad += 1
            elif ref[key].shape != got[key].shape or not np.array_equal(ref[key], got[key]):
                diff = (float(np.max(np.abs(ref[key].astype(np.float64) - got[key])))
                        if ref[key].shape == got[key].shape else float("nan"))
                print(f"{name}/{key}: DIFFERS {ref[key].shape} vs {got[key].shape}, "
                      f"max |diff| {diff:g}")
                bad += 1
        print(f"{name}: compared {len(ref)} arrays")
    if a.action == "compare":
        print("all bit-identical" if not bad else f"{bad} arrays differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
