"""Where every benchmark's results go: one JSON file (its folder created), path printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save(path: str | Path, results: dict[str, Any], indent: int = 1) -> Path:
    """Write ``results`` as JSON to ``path`` and say so; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=indent))
    print(f"wrote {out}")
    return out
