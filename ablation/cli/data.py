"""`ablate data`: look at a dataset on disk (images per split and class, what was skipped), or write a
generated one in a dataset's layout to try a reader on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ablation.cli import help as cli_help
from ablation.cli import views
from ablation.cli.common import console, errors, fail, load

data_app = typer.Typer(no_args_is_help=True, cls=cli_help.Group, help="Look at a dataset on disk, or write a generated one.")


@data_app.command("summary", cls=cli_help.Command)
def data_summary(
    dataset: Annotated[str, typer.Option(help="aihub, fer2013, rafdb or folder")],
    root: Annotated[Path, typer.Option(help="the dataset as extracted")],
    overrides: Annotated[list[str], typer.Option("--set", metavar="KEY=VALUE",
                                                 help="a data.* setting, e.g. --set data.label_from=uploader")] = [],
    verify: Annotated[bool, typer.Option(help="also decode every image, to find corrupt ones")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Images per split and class, subjects per split, and what was skipped, by reason (--json lists every file)."""
    import json

    # JSON strings are YAML strings, so a path is never read as a number or a date.
    given = [f"data.dataset={json.dumps(dataset)}", f"data.root={json.dumps(str(root))}"]
    _, spec = load(None, [*given, *overrides], model_and_data=True,
                    flags={"data.dataset": "--dataset", "data.root": "--root"})
    if spec.dataset == "synthetic":
        raise fail("--dataset: the generated dataset has nothing on disk to summarise; "
                    "expected aihub, fer2013, rafdb or folder")

    from ablation.data import read_index
    from ablation.data.records import printable

    try:
        index = read_index(spec)
    except ValueError as err:
        raise fail(str(err)) from None
    skipped = list(index.skipped)
    if verify:
        from rich.progress import Progress

        from ablation.data.pipeline import verified

        with Progress(console=errors, transient=True) as bar:
            task = bar.add_task("decoding every image", total=len(index.items))
            index, undecodable = verified(index, on_progress=lambda done, _: bar.update(task, completed=done))
        skipped += undecodable
    if as_json:
        print(json.dumps({"dataset": spec.dataset, "root": str(spec.root), "classes": list(index.classes),
                          "counts": index.counts(), "subjects": index.subjects(), "verified": verify,
                          # A file name that is not UTF-8 is printed with its odd bytes escaped, as JSON must be text.
                          "skipped": [{"path": printable(s.path), "reason": s.reason} for s in skipped]},
                         ensure_ascii=False))
        return
    views.dataset(console, spec, index, skipped, verified=verify)


@data_app.command("generate", cls=cli_help.Command)
def data_generate(
    root: Annotated[Path, typer.Option(help="an empty or new folder to write into")],
    layout: Annotated[str, typer.Option(help="the on-disk layout to imitate: aihub")] = "aihub",
    per_class: Annotated[int, typer.Option(min=1, help="training images per emotion")] = 100,
    valid_per_class: Annotated[int, typer.Option(min=1, help="validation images per emotion (split into val/test)")] = 40,
    width: Annotated[int, typer.Option(min=64, help="photo width in pixels")] = 1280,
    height: Annotated[int, typer.Option(min=64, help="photo height in pixels")] = 960,
    seed: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Write generated faces as a dataset on disk, e.g. in the AI-HUB layout, to try a reader on."""
    if layout != "aihub":
        raise fail(f"--layout {layout!r}: expected aihub")
    if root.exists() and any(root.iterdir()):
        raise fail(f"--root {root}: not empty; choose a new folder")

    from ablation.data import aihub_layout

    with console.status(f"writing {aihub_layout.photo_count(per_class, valid_per_class):,} photos to {root}"):
        aihub_layout.write(root, per_class=per_class, valid_per_class=valid_per_class, image_size=(width, height),
                           face_size=min(256, width, height), seed=seed)
    views.generated(console, root, per_class=per_class, valid_per_class=valid_per_class)
