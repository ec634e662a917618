"""flowdec: a full-band (48 kHz) neural audio codec with a flow-matching postfilter."""

from __future__ import annotations

__version__ = "0.4.0"

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "Codec": "flowdec.codec",
    "Stream": "flowdec.stream",
    "FlowDecEffect": "flowdec.effect",
    "Pipeline": "flowdec.effect",
    "Postfilter": "flowdec.postfilter",
}
"""Public names loaded on first use (PEP 562) so ``import flowdec`` stays light."""

if TYPE_CHECKING:
    from .codec import Codec
    from .effect import FlowDecEffect, Pipeline
    from .postfilter import Postfilter
    from .stream import Stream

__all__ = ["Codec", "FlowDecEffect", "Pipeline", "Postfilter", "Stream", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'flowdec' has no attribute {name!r}")


def __dir__() -> list[str]:
    """Module attributes plus the lazily loaded public names (so ``dir(flowdec)`` and tab
    completion show ``Codec``, ``Stream``, ... before first use)."""
    return sorted(set(globals()) | set(__all__))
