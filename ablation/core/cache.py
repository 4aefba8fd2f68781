"""Where `ablate` keeps what it can rebuild (generated datasets, the machine's speed calibration)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$ABLATE_CACHE_DIR`, else ~/.cache/ablate."""
    return Path(os.environ.get("ABLATE_CACHE_DIR") or Path.home() / ".cache" / "ablate")
