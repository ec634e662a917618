"""flowdec: a full-band (48 kHz) neural audio codec with a flow-matching postfilter."""

from __future__ import annotations

__version__ = "0.1.0"
