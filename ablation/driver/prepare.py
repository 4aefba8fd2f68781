"""A study's work on the driver around its trials: each dataset made ready once, before Ray starts, and
each model's latency timed once, after the trials, when nothing else runs on the machine. (A trial
counts its own model's parameters and MACs: they depend on shapes only, and are cached per model.)"""

from __future__ import annotations

from collections.abc import Iterable

from ablation.accounting import Latency, arm_latency, static_costs
from ablation.data import build_splits, check_trainable, classes_of
from ablation.data.records import Skipped
from ablation.core import StudySpec, Trial
from ablation.tracking import SKIPPED_ARTIFACT


def costs_key(trial: StudySpec) -> str:
    """What a model's costs depend on: its model and data settings, not its seed or training."""
    return trial.model.model_dump_json() + trial.data.model_dump_json()


def model_costs(trial: StudySpec) -> dict[str, int]:
    """`params_total`, `params_added` and `macs` of a trial's model (cached per model)."""
    return static_costs(trial.model, num_classes=len(classes_of(trial.data)), image_size=trial.data.image_size)


def latencies(trials: Iterable[Trial], console) -> dict[str, Latency]:
    """Each model's CPU latency by `costs_key`, timed one model after another in this process."""
    from rich.progress import Progress

    arms = {costs_key(t.spec): t.spec for t in trials}
    timed: dict[str, Latency] = {}
    if not arms:
        return timed
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("timing each model's latency", total=len(arms))
        for key, trial in arms.items():
            timed[key] = arm_latency(trial.model, num_classes=len(classes_of(trial.data)),
                                     image_size=trial.data.image_size)
            bar.advance(task)
    return timed


def prepare_data(trials: list[Trial], console) -> list[Skipped]:
    """Generate or decode each dataset the trials use, once, here rather than in every trial at once
    (on a cluster, other nodes fill their own cache); returns the inputs that could not be used."""
    from rich.progress import Progress

    datasets = {t.spec.data.model_dump_json(): t.spec.data for t in trials}.values()
    skipped: list[Skipped] = []
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("preparing the data", total=None)
        for data in datasets:
            splits = build_splits(data, on_progress=lambda done, total: bar.update(task, completed=done, total=total))
            # Sizes only count once decoding has skipped what it could not use.
            check_trainable(data, splits)
            skipped += splits.skipped
    if skipped:
        from rich.markup import escape

        from ablation.data.records import describe_skipped

        # A count per reason and a few files each: a real AI-HUB tree skips thousands (its 당황 photos).
        console.print(f"[yellow]{len(skipped):,} input(s) skipped[/yellow], by reason; the study's parent run "
                      f"lists every one in its artifact {SKIPPED_ARTIFACT}:", highlight=False, soft_wrap=True)
        for line in describe_skipped(skipped):
            console.print(escape(line), highlight=False, soft_wrap=True)
    return skipped
