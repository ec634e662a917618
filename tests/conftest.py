"""Shared fixtures. Keep this file small; put helpers next to the tests that use them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from flowdec.codec import Codec

# Property tests have no time budget: a slow or loaded machine must not fail them (a test
# that needs a bound sets a generous deadline itself).
settings.register_profile("flowdec", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("flowdec")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """A model folder: $FLOWDEC_TEST_MODEL, else the shipped model."""
    env = os.environ.get("FLOWDEC_TEST_MODEL")
    if env:
        return Path(env)
    from flowdec.model.files import SHIPPED_MODEL, models_root

    shipped = models_root() / SHIPPED_MODEL
    if (shipped / "model_card.json").is_file():
        return shipped
    pytest.skip("no model: set FLOWDEC_TEST_MODEL or install python/flowdec/models/flowdec-75")


@pytest.fixture(scope="session")
def codec(model_dir: Path) -> Codec:
    """A loaded :class:`flowdec.codec.Codec` (2 threads), shared by the whole session."""
    return Codec(model_dir, threads=2)


@pytest.fixture(scope="session")
def shipped_codec() -> Codec:
    """The shipped model loaded (2 threads), for ``quality`` tests of its trained behaviour;
    skips when it is not installed."""
    from flowdec.model.files import SHIPPED_MODEL, models_root

    shipped = models_root() / SHIPPED_MODEL
    if not (shipped / "model_card.json").is_file():
        pytest.skip("the shipped model is not installed (python/flowdec/models/flowdec-75)")
    return Codec(shipped, threads=2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model folder with random weights: the shipped model's graphs (encoder, decoder,
    streaming decoder, postfilter), bitrates, latency and card schema at about 1 MB, built
    once per session by ``python -m flowdec.train.export random`` (needs torch, which the
    test extra installs). For tests that need a model, not the shipped model's quality."""
    out = tmp_path_factory.mktemp("tiny") / "model"
    r = subprocess.run([sys.executable, "-m", "flowdec.train.export", "random", "--out",
                        str(out)], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def tiny_codec(tiny_model_dir: Path) -> Codec:
    """The tiny model loaded (2 threads), shared by the whole session."""
    return Codec(tiny_model_dir, threads=2)
