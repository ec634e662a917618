"""flowdec.Codec as a library: what ``decode`` refuses (clear errors, never NaN or 5e9 peaks)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from flowdec.codec import Bitstream, Codec
from flowdec.format.bitstream import BitstreamError


@pytest.fixture(scope="module")
def codec(tiny_codec: Codec) -> Codec:
    """These tests need a model, not the shipped model's quality: the tiny random one."""
    return tiny_codec


@pytest.fixture(scope="module")
def stream(codec: Codec) -> Bitstream:
    t = np.arange(24000) / 48000
    x = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    return codec.encode(x, 48000, 6.0, level_bands=24)


def test_decode_accepts_the_encoders_stream(codec: Codec, stream: Bitstream) -> None:
    y = codec.decode(stream, postfilter=False)
    assert y.shape == (24000,) and np.isfinite(y).all()  # mono [samples] in, [samples] out


@pytest.mark.parametrize("bad", [None, b"\x00" * 16, "x.fdc", 3, {"codes": []}])
def test_decode_refuses_what_is_not_a_bitstream(codec: Codec, bad: object) -> None:
    with pytest.raises(TypeError, match="^stream: expected a Bitstream") as e:
        codec.decode(bad)  # type: ignore[arg-type]
    if isinstance(bad, str | bytes):
        assert "Bitstream.load" in str(e.value)


@pytest.mark.parametrize(
    ("change", "match"),
    [  # (codes, codebook size) -> bad codes; {size}: the codebook size in the message
        (lambda c, n: c.astype(np.int64) - int(c.min()) - 5, "code -5"),
        (lambda c, n: c.astype(np.int64) * 0 + n, "code {size}"),
        (lambda c, n: c.astype(np.float64) + 0.5, "integer"),
        (lambda c, n: c.astype(bool), "integer"),
        (lambda c, n: c[0], "shape"),  # 2-D
        (lambda c, n: np.concatenate([c, c]), "shape"),  # a channel too many
        (lambda c, n: c[:, :3], "shape"),  # fewer codebooks than the header says
    ],
)
def test_decode_refuses_bad_codes(codec: Codec, stream: Bitstream, change: object,
                                  match: str) -> None:
    size = 2**stream.header.bits_per_code
    bad = dataclasses.replace(stream, codes=change(stream.codes, size))  # type: ignore[operator]
    with pytest.raises(BitstreamError, match=f"^stream.codes: .*{match.format(size=size)}"):
        codec.decode(bad, postfilter=False)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("gains_db", np.nan, "finite"),
        ("gains_db", 200.0, "outside the ±31.75 dB"),
        ("gains_db", -60.0, "outside the ±31.75 dB"),
        ("band_gains_db", np.inf, "finite"),
        ("band_gains_db", 40.0, "outside the -24..\\+21 dB"),
    ],
)
def test_decode_refuses_gains_a_stream_cannot_carry(codec: Codec, stream: Bitstream,
                                                    field: str, value: float,
                                                    match: str) -> None:
    """NaN gains gave NaN audio and +200 dB gave 5e9 peaks."""
    g = np.array(getattr(stream, field), np.float32)
    g.flat[0] = value
    with pytest.raises(BitstreamError, match=f"^stream.{field}: .*{match}"):
        codec.decode(dataclasses.replace(stream, **{field: g}),  # type: ignore[arg-type]
                     postfilter=False)


def test_decode_refuses_gains_of_the_wrong_shape(codec: Codec, stream: Bitstream) -> None:
    assert stream.gains_db is not None
    with pytest.raises(BitstreamError, match="^stream.gains_db: expected shape"):
        codec.decode(dataclasses.replace(stream, gains_db=stream.gains_db[:, :0]),
                     postfilter=False)


def test_decode_checks_its_arguments(codec: Codec, stream: Bitstream) -> None:
    for bad in (0, -1.0, float("nan"), float("inf"), "10"):
        with pytest.raises(ValueError, match="^chunk_seconds"):
            codec.decode(stream, postfilter=False, chunk_seconds=bad)  # type: ignore[arg-type]
    if codec.has_postfilter:
        for nfe in (0, -2, 2.5):
            with pytest.raises(ValueError, match="^nfe"):
                codec.decode(stream, nfe=nfe, postfilter=True, seed=0)  # type: ignore[arg-type]


def test_codec_imports_no_private_names() -> None:
    """codec.py used bitstream's private _check_codes/_check_gains/_check_band_gains."""
    import flowdec.codec
    import flowdec.format.bitstream

    tree = ast.parse(Path(flowdec.codec.__file__).read_text())
    private = [f"{node.module}.{a.name}" for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) for a in node.names if a.name.startswith("_")]
    assert private == []
    assert {"check_codes", "check_gains", "check_band_gains"} <= set(
        flowdec.format.bitstream.__all__)


def test_nfe_or_seed_ask_for_the_postfilter(codec: Codec, stream: Bitstream,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With the postfilter off by default, decode(nfe=...) ran the plain codec silently; now
    giving nfe or seed asks for the postfilter (Codec.use_postfilter), and the seed is 0 when
    none is given (it was random)."""
    if not codec.has_postfilter:
        pytest.skip("the model has no postfilter")
    monkeypatch.setattr(Codec, "postfilter_recommended", property(lambda self: False))
    plain = codec.decode(stream, postfilter=False)
    np.testing.assert_array_equal(codec.decode(stream), plain)
    np.testing.assert_array_equal(codec.decode(stream, nfe=2, postfilter=False), plain)
    post = codec.decode(stream, nfe=2, seed=0, postfilter=True)
    assert not np.array_equal(post, plain)
    np.testing.assert_array_equal(codec.decode(stream, nfe=2), post)
    np.testing.assert_array_equal(codec.decode(stream, seed=0),
                                  codec.decode(stream, postfilter=True))
    assert codec.use_postfilter(None, seed=5) and not codec.use_postfilter(False, nfe=2)
    assert codec.postfilter_settings(None) == (False, 6, 0)


def test_decode_keeps_the_shape_of_a_1d_input(codec: Codec, stream: Bitstream,
                                               tmp_path: Path) -> None:
    """README: "same shape as the input". A file does not keep it: [channels, samples]."""
    x = np.zeros((1, 4800), np.float32)
    assert codec.decode(codec.encode(x, 48000), postfilter=False).shape == (1, 4800)
    assert codec.roundtrip(x[0], 48000, postfilter=False).shape == (4800,)
    stream.save(tmp_path / "x.fdc")
    assert codec.decode(Bitstream.load(tmp_path / "x.fdc"), postfilter=False).shape == (1, 24000)


# -- the one stage contract and the chains -------------------------------------------------------
def _audio_stage(name: str) -> object:
    """A fresh audio → audio stage for a 1-channel stream of 3 s (its gains added)."""
    from flowdec.audio.limiter import PeakLimiter
    from flowdec.dsp.band_level import BandGainStage
    from flowdec.dsp.level import OutputLevel, PeakNormalizer

    rng = np.random.default_rng(3)
    if name == "bands":
        b = BandGainStage(1, 640, 75, 24)
        b.add_gains(rng.uniform(-6, 6, (1, 3, 24)))
        return b
    if name == "level":
        o = OutputLevel(1, 640, 3)
        o.add_gains(rng.uniform(-6, 6, (1, 75)))
        return o
    if name == "limiter":
        return PeakLimiter(1, 48000)
    return PeakNormalizer(1, 384, 0.0, 20.0, -50.0, 125.0)


def test_every_stage_follows_the_stage_contract(codec: Codec) -> None:
    """Each stage is a :class:`~flowdec.pipeline.stages.Stage`; the audio stages return exactly the
    samples pushed (``finish`` needs no length) and the same bits for any push pattern; a
    reset stage starts over. The encoder and decoder stages and the chains, too."""
    from flowdec.pipeline.stages import Stage

    rng = np.random.default_rng(0)
    x = (0.5 * rng.standard_normal((1, 3 * 48000 - 123))).astype(np.float32)
    x[0, 40000:40100] *= 6  # an over for the limiter
    for name in ("bands", "level", "limiter", "normalizer"):
        stage = _audio_stage(name)
        assert isinstance(stage, Stage), name
        assert stage.latency >= 0
        whole = np.concatenate([stage.push(x), stage.finish()], axis=1)
        assert whole.shape == x.shape, name
        stage = _audio_stage(name)
        assert isinstance(stage, Stage)
        cuts = np.sort(rng.integers(0, x.shape[1], 12))
        parts = [stage.push(p) for p in np.split(x, cuts, axis=1)] + [stage.finish()]
        np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole, err_msg=name)

    enc = codec.encoder_stage(1, 7)
    dec = codec.decoder_stage(1, 8, 5)
    for stage in (enc, dec, codec.decode_chain(1, 8, 5, 3)):
        assert isinstance(stage, Stage) and stage.latency > 0
    codes = np.concatenate([enc.push(x), enc.finish()], axis=2)
    assert codes.shape[2] == -(-x.shape[1] // 640) + 1
    enc.reset()
    np.testing.assert_array_equal(np.concatenate([enc.push(x), enc.finish()], axis=2), codes)
    y = np.concatenate([dec.push(codes[:, :8]), dec.finish()], axis=1)
    assert y.shape[1] == codes.shape[2] * 640
    if codec.has_postfilter:
        post = codec.postfilter_stage(1, 40, nfe=2, seed=0)
        assert isinstance(post, Stage) and post.latency > 0
        z = np.concatenate([post.push(y), post.finish()], axis=1)
        assert z.shape == y.shape and np.isfinite(z).all()
        post.reset()
        np.testing.assert_array_equal(np.concatenate([post.push(y), post.finish()], axis=1), z)


def test_chains_give_the_clip_api_output(codec: Codec) -> None:
    """The model's encode chain and decode chain, pushed by hand in odd pieces, give
    ``Codec.encode`` / ``Codec.decode``'s codes and audio at 48 kHz: there is one chain."""
    from flowdec.pipeline.model import Model

    assert isinstance(codec, Model)
    rng = np.random.default_rng(1)
    x = (0.2 * rng.standard_normal((2, 48000 + 77))).astype(np.float32)
    s = codec.encode(x, 48000, 6.0, frames_per_gain=75, level_bands=24)
    enc = codec.encode_chain(2, s.header.n_codebooks, 750, 75, 24)
    parts = [enc.push(p) for p in np.split(x, [5000, 5001, 30000], axis=1)] + [enc.finish()]
    codes = np.concatenate([p.codes for p in parts], axis=2)
    gains = np.concatenate([p.gains for p in parts if p.gains is not None], axis=1)
    bands = np.concatenate([p.bands for p in parts if p.bands is not None], axis=1)
    np.testing.assert_array_equal(codes, s.codes)
    np.testing.assert_array_equal(gains, s.gains_db)
    np.testing.assert_array_equal(bands, s.band_gains_db)
    dec = codec.decode_chain(2, s.header.n_codebooks, 750, 75, 24)
    dec.add_gains(gains, bands)
    y = np.concatenate([dec.push(codes), dec.finish()], axis=1)  # decode's pieces
    np.testing.assert_array_equal(y[:, : x.shape[1]], codec.decode(s, postfilter=False))
