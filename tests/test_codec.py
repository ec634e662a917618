"""flowdec.Codec as a library: what ``decode`` refuses (clear errors, never NaN or 5e9 peaks)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from flowdec.bitstream import BitstreamError
from flowdec.codec import Bitstream, Codec


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
    import flowdec.bitstream
    import flowdec.codec

    tree = ast.parse(Path(flowdec.codec.__file__).read_text())
    private = [f"{node.module}.{a.name}" for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) for a in node.names if a.name.startswith("_")]
    assert private == []
    assert {"check_codes", "check_gains", "check_band_gains"} <= set(flowdec.bitstream.__all__)


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
