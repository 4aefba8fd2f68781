"""What the commands print: a plan, a ranking, a report's tables, a dataset on disk and explanation scores,
drawn with rich from what the API returns. Only rich is imported here, so `ablate --help` stays fast."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def header(console: Console, spec) -> None:
    """What `ablate run` is about to run."""
    arms, seeds, race = len(spec.arms()), len(spec.search.seeds), spec.search.race
    if race:
        console.print(f"[bold]{spec.name}[/bold]: a race of {arms} arms, {race.start} to {seeds} seeds each "
                      f"({arms * race.start} to {arms * seeds} trials), {spec.train.epochs} epochs each")
        return
    console.print(f"[bold]{spec.name}[/bold]: {len(spec.trials())} trials ({arms} configurations x {seeds} seeds), "
                  f"{spec.train.epochs} epochs each")


def plan(console: Console, spec, p) -> None:
    """A plan's trials, each arm's size and compute, and what the study costs on this machine."""
    trials = Table(title=f"{spec.name}: {len(p.trials)} trials ({len(p.arms)} arms x {len(spec.search.seeds)} seeds, "
                         f"design {spec.search.design}, {spec.train.epochs} epochs each)")
    for column in ("trial id", "arm", "seed"):
        trials.add_column(column, overflow="fold")
    for t in p.trials:
        trials.add_row(t.id, t.arm, str(t.seed))
    console.print(trials)
    arms = Table(title=f"cost of each arm at {spec.data.image_size} px")
    for column in ("arm", "params", "added", "MACs / image", "compute / trial"):
        arms.add_column(column, justify="left" if column == "arm" else "right", overflow="fold")
    for a in p.arms:
        arms.add_row(a.arm, f"{a.params_total / 1e6:.2f}M", f"{a.params_added / 1e6:+.3f}M", _macs(a.macs),
                     _macs(a.train_macs))
    console.print(arms)
    console.print(f"Training compute: {_macs(p.total_macs)} in all. This machine trains about "
                  f"{p.macs_per_second / 1e9:.1f} GMAC/s per trial with {max(1, int(spec.resources.cpu))} CPU threads "
                  f"and runs {p.concurrent} trial(s) at once: an estimated {_duration(p.estimated_seconds)} here on CPU.")
    if p.most_macs is not None:
        race = spec.search.race
        console.print(f"A race: that is its least cost, every arm decided at its first {race.start} seeds. At most "
                      f"every arm runs all {len(spec.search.seeds)} seeds: {_macs(p.most_macs)}, an estimated "
                      f"{_duration(p.most_seconds)}.")


def _macs(n: float) -> str:
    for unit, scale in (("PMAC", 1e15), ("TMAC", 1e12), ("GMAC", 1e9)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n / 1e6:.2f} MMAC"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes / 60
    return f"{hours:.0f} h" if hours < 72 else f"{hours / 24:.0f} days"


def ranking(console: Console, spec, summaries) -> None:
    """The configurations of a study (`report.rank`'s summaries), best first."""
    axes = spec.axes()
    table = Table(title=f"{spec.name}: configurations ranked by best-epoch {spec.metric} ({spec.mode})")
    table.add_column("#", justify="right")
    short = len({a.split(".", 1)[-1] for a in axes}) == len(axes)  # names without the section suffice unless they clash
    for axis in axes:
        table.add_column(axis.split(".", 1)[-1] if short else axis, overflow="fold")
    for column in ("seeds", spec.metric, "sd", "test acc", "test F1", "params"):
        table.add_column(column, justify="right")

    def fmt(value: float | None, digits: int = 4) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for i, s in enumerate(summaries, 1):
        lost = ", ".join(f"{n} {what}" for n, what in ((s.failed, "failed"), (s.killed, "killed")) if n)
        seeds = f"{s.seeds}" + (f" ({lost})" if lost else "")
        params = "-" if s.params_total is None else f"{s.params_total / 1e6:.2f}M"
        table.add_row(str(i), *s.config.values(), seeds, fmt(s.mean), fmt(s.std), fmt(s.test_accuracy),
                      fmt(s.test_macro_f1), params)
    console.print(table)


def race(console: Console, spec, decisions, *, fixed_trials: int, trials: int) -> None:
    """A race's decisions: each arm against the baseline, when it was decided, its interval."""
    table = Table(title=f"{spec.name}: the race against {spec.race_baseline()} on best-epoch {spec.metric} "
                        f"(family-wise error <= {spec.search.race.alpha:g} over every look)")
    for column in ("arm", "decision", "seeds to decide", "difference", "interval"):
        table.add_column(column, overflow="fold", justify="left" if column in ("arm", "decision") else "right")
    for d in decisions.values():
        at = "-" if d.decided_at is None else str(d.decided_at)
        table.add_row(d.arm, d.state, at, f"{d.mean:+.4f}", f"[{d.low:+.4f}, {d.high:+.4f}]")
    console.print(table)
    console.print(f"{trials} trials where the fixed design runs {fixed_trials}: {1 - trials / fixed_trials:.0%} "
                  f"saved. Equivalent means inside ±{spec.search.race.margin:g}.", highlight=False)


def report(console: Console, made) -> None:
    """A report's tables in their compact form, and its notes."""
    for table in made.tables(compact=True):
        shown = Table(title=table.title, title_justify="left")
        for column in table.header:
            shown.add_column(column, overflow="fold")
        for row in table.rows:
            shown.add_row(*row)
        console.print(shown)
    for note in made.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)


def dataset(console: Console, spec, index, skipped: list, *, verified: bool) -> None:
    """Images per split and class of a dataset on disk, subjects per split, and what was skipped."""
    counts, subjects = index.counts(), index.subjects()
    table = Table(title=f"{spec.dataset} at {spec.root}")
    table.add_column("class")
    for split in counts:
        table.add_column(split, justify="right")
    for name in index.classes:
        table.add_row(name, *(f"{counts[split][name]:,}" for split in counts))
    table.add_row("[bold]all", *(f"[bold]{sum(c.values()):,}" for c in counts.values()))
    if subjects is not None:
        table.add_row("[dim]subjects", *(f"[dim]{subjects[split]:,}" for split in counts))
    console.print(table)
    if not skipped:
        console.print("Nothing skipped." + ("" if verified else " (Images were not decoded; --verify decodes them.)"))
        return
    reasons = Counter(s.reason.split(":")[0] for s in skipped)
    console.print(f"{len(skipped):,} skipped: " + ", ".join(f"{n:,} {r}" for r, n in reasons.most_common()),
                  highlight=False)
    for s in skipped[:50]:
        console.print(f"  {escape(s.path)}: {escape(s.reason)}", highlight=False, soft_wrap=True)
    if len(skipped) > 50:
        console.print(f"  ... and {len(skipped) - 50:,} more (--json lists them all)")


def cue_scores(console: Console, made) -> None:
    """Each run's Grad-CAM scores against the cue masks (`explain.explain_runs` with scoring)."""
    table = Table(title="Grad-CAM (true class) against the cue masks")
    for column in ("run", "cue energy", "pointing game", "occluded: energy", "pointing", "unoccluded: energy", "pointing"):
        table.add_column(column, overflow="fold")
    for e in made.explained:
        s = made.scores[e.trained.run_id]
        table.add_row(e.trained.name, *[f"{s[k]:.3f}" if k in s else "-" for k in (
            "cue_energy_all", "pointing_game_all", "cue_energy_occluded", "pointing_game_occluded",
            "cue_energy_unoccluded", "pointing_game_unoccluded")])
    table.caption = (f"an evenly spread map would score {next(iter(made.scores.values()))['cue_area_all']:.3f} "
                     "cue energy (the cues' share of the image)")
    console.print(table)
