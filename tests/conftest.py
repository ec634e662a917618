"""Shared fixtures. Keep this file small; put helpers next to the tests that use them."""

from __future__ import annotations

import os
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
    from flowdec.model_files import SHIPPED_MODEL, models_root

    shipped = models_root() / SHIPPED_MODEL
    if (shipped / "model_card.json").is_file():
        return shipped
    pytest.skip("no model: set FLOWDEC_TEST_MODEL or install python/flowdec/models/flowdec-75")


@pytest.fixture(scope="session")
def codec(model_dir: Path) -> Codec:
    """A loaded :class:`flowdec.codec.Codec` (2 threads), shared by the whole session."""
    return Codec(model_dir, threads=2)
