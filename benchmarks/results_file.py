"""Where every benchmark leaves its figures: printed, and kept as JSON and Markdown in results/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def publish(name: str, result: dict[str, Any], lines: list[str]) -> None:
    """Print `lines` and write results/<name>.json (the figures) and results/<name>.md (the lines)."""
    print("\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
