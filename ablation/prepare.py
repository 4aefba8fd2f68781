"""A study's work before Ray starts: each dataset made ready once, and each arm's costs measured once
(a drawn trial's by the trial itself, since a searcher's draws are not known in advance)."""

from __future__ import annotations

from collections import Counter

from .accounting import arm_costs
from .data import build_splits, check_trainable, classes_of
from .data.records import Skipped
from .spec import StudySpec, Trial
from .tracking import SKIPPED_ARTIFACT


def costs_key(trial: StudySpec) -> str:
    """What a model's costs depend on: its model and data settings, not its seed or training."""
    return trial.model.model_dump_json() + trial.data.model_dump_json()


def measure_costs(trial: StudySpec) -> dict[str, float]:
    """`params_total`, `params_added`, `macs` and `latency_ms` (CPU, one image) of a trial's model."""
    return arm_costs(trial.model, num_classes=len(classes_of(trial.data)), image_size=trial.data.image_size)


def costs_of(trials: list[Trial], console) -> dict[str, dict[str, float]]:
    """Each arm's costs by `costs_key`, one arm after another so every latency is timed on an idle machine."""
    from rich.progress import Progress

    arms = {costs_key(t.spec): t.spec for t in trials}
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("measuring each arm's cost", total=len(arms))
        costs = {}
        for key, trial in arms.items():
            costs[key] = measure_costs(trial)
            bar.advance(task)
    return costs


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
        reasons = Counter(s.reason.split(":")[0] for s in skipped)
        console.print(f"[yellow]{len(skipped)} input(s) skipped[/yellow] ("
                      + ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
                      + f"); the list is the study run's artifact {SKIPPED_ARTIFACT}", highlight=False)
    return skipped
