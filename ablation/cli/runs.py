"""`ablate runs` and `ablate explain`: a study's trial runs listed (id, arm, seed, how it ended, its
score, whether its weights were kept), and the attribution maps of those that kept their weights,
named by run id or by study, arm and seed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ablation.cli import views
from ablation.cli.common import check_out, console, errors, fail

TrackingUri = Annotated[Optional[str], typer.Option(help="MLflow tracking URI; default $MLFLOW_TRACKING_URI or ./mlruns")]


def runs(
    study: Annotated[str, typer.Argument(metavar="STUDY", help="the study's name (its MLflow experiment)")],
    arm: Annotated[list[str], typer.Option(help="only this configuration (as the report names it); repeatable")] = [],
    seed: Annotated[Optional[int], typer.Option(help="only this seed")] = None,
    tracking_uri: TrackingUri = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """A study's trial runs: id, arm, seed, how each ended, its best score and whether its weights were kept."""
    import json

    listed = _study_runs(study, tracking_uri, arm, seed)
    if as_json:
        print(json.dumps([row._asdict() for row in listed]))
        return
    views.study_runs(console, study, listed)


def _study_runs(study: str, tracking_uri: str | None, arms: list[str], seed: int | None):
    from ablation.tracking import StoreNotFound, StoreUnusable, StudyNotFound, resolve_uri, runs_of_study

    uri = resolve_uri(tracking_uri)
    try:
        listed = runs_of_study(uri, study)
    except (StoreNotFound, StoreUnusable, StudyNotFound) as err:
        raise fail(str(err)) from None
    known = {row.arm for row in listed}
    unknown = [a for a in arms if a not in known]
    if unknown:
        raise fail(f"--arm {unknown[0]}: not a configuration of {study} (it has: {', '.join(sorted(known))})")
    return [row for row in listed if (not arms or row.arm in arms) and (seed is None or row.seed == seed)]


def explain(
    targets: Annotated[list[str], typer.Argument(metavar="RUN_ID... | STUDY", help="MLflow run ids of finished "
                                                 "trials, or a study's name with --arm (and --seed)")],
    arm: Annotated[list[str], typer.Option(help="with STUDY: the configuration whose run to explain; repeatable")] = [],
    seed: Annotated[Optional[int], typer.Option(help="with STUDY: the seed; default: the lowest whose weights were "
                                                "kept")] = None,
    images: Annotated[Optional[Path], typer.Option(help="an image, or a folder of them (a folder named after a "
                                                   "class gives the true class)")] = None,
    from_split: Annotated[Optional[str], typer.Option(help="take images from this split of the first run's data "
                                                      "(train, val or test)")] = None,
    n: Annotated[int, typer.Option(min=1, help="how many images")] = 8,
    layer: Annotated[Optional[str], typer.Option(help="the module Grad-CAM looks at: a stage (layer4) or a block "
                                                 "(layer4.1); default: the deepest stage whose map is at least "
                                                 "6x6 at the images' size")] = None,
    score: Annotated[bool, typer.Option("--score", help="score Grad-CAM against the cue masks of generated "
                                        "faces: energy on the cues, pointing game; logged to each run")] = False,
    out: Annotated[Path, typer.Option(help="folder for the PNGs (and scores.json)")] = Path("explain"),
    tracking_uri: TrackingUri = None,
) -> None:
    """Guided Backprop, Grad-CAM and Guided Grad-CAM of trained runs, side by side, per image."""
    if (images is None) == (from_split is None):
        raise fail("give exactly one of --images PATH and --from-split SPLIT")
    if from_split is not None and from_split not in ("train", "val", "test"):
        raise fail(f"--from-split {from_split}: expected train, val or test")
    check_out(out, "the figures and scores.json")
    run_ids = _run_ids(targets, arm, seed, tracking_uri)

    from ablation.explain import ExplainError, explain_runs
    from ablation.tracking import RunNotFound, StoreNotFound, StoreUnusable, resolve_uri

    try:
        made = explain_runs(resolve_uri(tracking_uri), run_ids, out=out, images=images, split=from_split, n=n,
                            layer=layer, scoring=score, status=console.status)
    except (RunNotFound, StoreNotFound, StoreUnusable, ExplainError) as err:
        raise fail(str(err)) from None
    for warning in made.warnings:  # files it could not read; a layer too coarse at this image size
        errors.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    if made.scores:
        views.cue_scores(console, made)
    console.print(f"Wrote {views.counted(len(made.figures), 'figure')} to {out}: Grad-CAM at {made.layer}, "
                  f"{views.counted(len(made.images.names), 'image')} x {views.counted(len(made.explained), 'run')}.",
                  highlight=False, soft_wrap=True)


def _run_ids(targets: list[str], arms: list[str], seed: int | None, tracking_uri: str | None) -> list[str]:
    """Run ids as given, or, with --arm, the study's run of each arm at `seed` (default: the lowest seed
    whose weights were kept)."""
    if not arms:
        if seed is not None:
            raise fail("--seed goes with a study's name and --arm; without them, give run ids")
        return targets
    if len(targets) != 1:
        raise fail(f"--arm: give one study's name, not {len(targets)} arguments ({' '.join(targets)})")
    listed = _study_runs(targets[0], tracking_uri, arms, seed)
    chosen = []
    for name in arms:
        kept = sorted((row for row in listed if row.arm == name and row.weights == "kept"), key=lambda r: r.seed)
        if not kept:
            said = f" at seed {seed}" if seed is not None else ""
            raise fail(f"--arm {name}: no run of {targets[0]}{said} kept its weights (see ablate runs "
                       f"{targets[0]} --arm {name}; the spec's keep_models chooses which are kept)")
        chosen.append(kept[0].run_id)
    return chosen
