"""What every `ablate` command shares: its two consoles, its usage error (exit 2, one line), and loading
a study or its model and data settings from a spec and `--set` overrides."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
errors = Console(stderr=True)

USAGE_ERROR = 2
STUDY_STOPPED = 3  # Ray or Tune failed mid-study (not a trial): `ablate resume` continues it
TAKEN_OVER = 4  # another driver took the study over while this one was suspended: it stopped, writing nothing


def fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(USAGE_ERROR)


# The shipped specs, beside the package in a checkout or an editable install.
SHIPPED = Path(__file__).resolve().parents[2] / "search_spaces"


def shipped_spec(value: Path | None) -> Path | None:
    """SPEC as given, or, when no such file exists and it is a bare name, the shipped spec of that name:
    `ablate run quickstart` is ./search_spaces/quickstart.yaml, else the checkout's, from any folder."""
    if value is None or value.exists() or value.suffix or len(value.parts) != 1:
        return value
    for folder in (Path("search_spaces"), SHIPPED):
        if (folder / f"{value}.yaml").is_file():
            return folder / f"{value}.yaml"
    names = sorted(p.stem for p in SHIPPED.glob("*.yaml")) if SHIPPED.is_dir() else []
    raise fail(f"{value}: no such spec file" + (f", nor a shipped spec (those are: {', '.join(names)})" if names else ""))


def check_out(folder: Path, holds: str) -> None:
    """Refuse an --out that names a file, before any work: it would fail once the work is done."""
    if folder.exists() and not folder.is_dir():
        raise fail(f"--out {folder}: is a file; give a folder, which will hold {holds}")


def load(spec_path: Path | None, overrides: list[str], *, model_and_data: bool = False,
          flags: dict[str, str] | None = None, data_on_disk: bool = True):
    """The study at `spec_path` with `overrides` (or, with `model_and_data`, its model and data settings,
    of the defaults without a path); a fault exits 2, naming an override of a key in `flags` as its flag."""
    from ablation.core import SpecError, Study, load_model_and_data

    try:
        if model_and_data:
            return load_model_and_data(spec_path, overrides)
        return Study.load(spec_path, overrides, data_on_disk=data_on_disk)
    except SpecError as err:
        message = str(err)
        for key, flag in (flags or {}).items():
            message = message.replace(f"--set: {key}:", f"{flag}:")
        raise fail(message) from None
