"""Where every benchmark leaves its figures: printed, and kept as JSON and Markdown in results/, each
with the commit and the machine that made them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def made_on() -> dict[str, str]:
    """The checkout's commit (with `-dirty` if it has changes) and the machine: its CPU and the instruction
    set torch's CPU kernels were chosen for, which figures of one commit differ by between machines, in
    speed and in the last digits of their scores."""
    from ablation.core.names import Tag
    from ablation.tracking.provenance import cpu_model, git_tags

    git = git_tags(RESULTS.parents[1])  # as a study's parent run records its checkout
    commit = git.get(Tag.GIT_COMMIT, "unknown")[:7] + ("-dirty" if git.get(Tag.GIT_DIRTY) == "true" else "")
    try:
        import torch

        kernels = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        kernels = "unknown"
    return {"commit": commit, "cpu": cpu_model(), "cpu_kernels": kernels}


def publish(name: str, result: dict[str, Any], lines: list[str]) -> None:
    """Print `lines` and write results/<name>.json (the figures) and results/<name>.md (the lines), each
    saying where they were made (`made_on`)."""
    made = made_on()
    lines = [*lines, f"Made at {made['commit']} on {made['cpu']} (torch's {made['cpu_kernels']} kernels)."]
    print("\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result | {"made_on": made}, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
