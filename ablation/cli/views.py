"""What the commands print: a plan, a ranking, a report's tables, a dataset on disk and explanation scores,
drawn with rich from what the API returns. Only rich is imported here, so `ablate --help` stays fast."""

from __future__ import annotations

import re

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


class Name:
    """A cell for a name such as `placement=layer1+layer2,seed=0`: in a narrow column it wraps after a `,`
    or `+` (or at a space), never inside a key or value, so `placement=none` cannot become `placemen` /
    `t=none`. Only a single part wider than the column is folded, as a last resort."""

    def __init__(self, text: str, style: str = "") -> None:
        self.text, self.style = str(text), style
        self.parts = re.split(r"(?<=[,+\s])(?=\S)", self.text)  # each ends where a line may end

    def __rich_measure__(self, console, options) -> Measurement:
        return Measurement(max(cell_len(p.rstrip()) for p in self.parts), cell_len(self.text)).clamp(
            max_width=options.max_width)

    def __rich_console__(self, console, options):
        lines, line = [], ""
        for part in self.parts:
            if line and cell_len(line + part.rstrip()) > options.max_width:
                lines.append(line.rstrip())
                line = part.lstrip()
            else:
                line += part
        lines.append(line.rstrip())
        yield Text("\n".join(lines), style=self.style, overflow="fold")


# Rules under the header only, and one space between columns: what a wide table needs to fit in 80 columns.
LIGHT = {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False, "collapse_padding": True}


def numbers(table: Table, *headers: str) -> None:
    """Columns of short figures, each kept on one line: in a narrow terminal the name columns wrap instead."""
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True)


def _print(console: Console, title: str, table: Table | None, note: str = "", lead: list[str] = ()) -> None:
    """A table (if any) between its title and lead and its note, which span the terminal rather than wrap to
    a narrow table's width."""
    console.print(escape(title), style="table.title", highlight=False)
    for text in lead:
        console.print(escape(text), highlight=False)
    if table is not None:
        console.print(table)
    if note:
        console.print(escape(note), style="table.caption", highlight=False)


def counted(n: int, noun: str) -> str:
    """`1 seed`, `3 seeds`."""
    return f"{n} {noun}{'s' * (n != 1)}"


def header(console: Console, study) -> None:
    """What `ablate run` is about to run."""
    spec = study.spec
    arms, seeds, race = len(study.arms), len(spec.search.seeds), spec.search.race
    if race:
        console.print(f"[bold]{spec.name}[/bold]: a race of {arms} arms, {race.start} to {seeds} seeds each "
                      f"({arms * race.start} to {arms * seeds} trials), {spec.train.epochs} epochs each")
        return
    console.print(f"[bold]{spec.name}[/bold]: {counted(len(study.trials), 'trial')} ({counted(arms, 'configuration')} "
                  f"x {counted(seeds, 'seed')}), {counted(spec.train.epochs, 'epoch')} each")


def costs(console: Console, m, figures: dict) -> None:
    """`ablate inspect`: a model's size and compute, and its latency (with its spread and load) if timed."""
    console.print(f"{m.arch} + {m.attention} at {m.placement} (count {m.count}, reduction {m.reduction}), "
                  f"{figures['input_size']} px, {figures['num_classes']} classes")
    console.print(f"  parameters  {figures['params_total']:,} ({figures['params_added']:+,} over vanilla)")
    console.print(f"  MACs        {_macs(figures['macs'])} per image")
    if "latency_ms" not in figures:
        console.print("  latency     not timed (--latency times it)")
        return
    loaded = (f"; other processes kept {figures['latency_busy']:.0%} of the CPU busy meanwhile, so it is slower "
              "than on a quiet machine" if figures["latency_under_load"] else "")
    console.print(f"  latency     {figures['latency_ms']:.1f} ms per image on this machine (median; interquartile "
                  f"range {figures['latency_iqr_ms']:.1f} ms{loaded})")


def plan(console: Console, study, p, *, gpu: tuple[str, float, float, float] | None = None,
         list_trials: bool = False) -> None:
    """What a study will run and cost: the header `ablate run` prints, its design, each arm's size and
    compute, and what the study costs on this machine. Each trial's id and seed only with `list_trials`."""
    spec = study.spec
    header(console, study)
    if list_trials:
        trials = Table(**LIGHT)
        trials.add_column("trial id", no_wrap=True)
        trials.add_column("arm")
        numbers(trials, "seed")
        for t in p.trials:
            trials.add_row(t.id, Name(t.arm), str(t.seed))
        console.print(trials)
    if study.factorial is not None:
        two_level(console, study.factorial)
    arms = Table(title=f"cost of each arm at {spec.data.image_size} px")
    arms.add_column("arm")
    numbers(arms, "params", "added", "MACs / image", "compute / trial")
    for a in p.arms:
        arms.add_row(Name(a.arm), f"{a.params_total / 1e6:.2f}M", f"{a.params_added / 1e6:+.3f}M", _macs(a.macs),
                     _macs(a.train_macs))
    console.print(arms)
    if p.data_note:
        console.print(f"[yellow]Note:[/yellow] {p.data_note}.")
    speed = p.speed
    timed = (f"timed {speed.measured} on a quiet machine" if speed.cached else
             f"timed just now while other processes kept {speed.busy:.0%} of the CPU busy, so not cached, and the "
             "estimate may be off by more than usual" if speed.under_load else "timed just now on a quiet machine")
    console.print(f"Training compute: {_macs(p.total_macs)} in all. This machine trains about "
                  f"{p.macs_per_second / 1e9:.1f} GMAC/s per trial with "
                  f"{counted(max(1, int(spec.resources.cpu)), 'CPU thread')} "
                  f"({timed}; steps varied ±{speed.spread / 2:.0%}) and runs {counted(p.concurrent, 'trial')} at once: an "
                  f"estimated {_duration(p.estimated_seconds)} here on CPU ({_span(p.estimated_seconds)}), with the "
                  "study's start-up and each trial's overhead. The span is a factor of two either way: throughput "
                  "varies with the architecture and the image size, and with what else the machine runs.")
    if p.memory is not None:
        console.print(("" if p.memory.fits else "[yellow]") + escape(p.memory.describe(p.cpus, spec.resources.cpu))
                      + ("" if p.memory.fits else "[/yellow]"), highlight=False)
    if gpu is not None:
        name, peak, utilisation, hours = gpu
        console.print(f"On one {name.upper()} ({peak / 1e12:.0f} TFLOPS fp16/bf16 peak, at an assumed "
                      f"{utilisation:.0%} of it): about {hours:,.2f} GPU-hours of training, the same factor of "
                      "two either way (small images keep a GPU further from its peak), plus start-up.")
    if p.most_macs is not None:
        race = spec.search.race
        console.print(f"A race: that is its least cost, every arm decided at its first {race.start} seeds. At most "
                      f"every arm runs all {len(spec.search.seeds)} seeds: {_macs(p.most_macs)}, an estimated "
                      f"{_duration(p.most_seconds)} ({_span(p.most_seconds)}).")
        console.print(f"Its margin, ±{race.margin:g}, is in {spec.metric}'s units. What it means depends on how much "
                      "the paired difference from the baseline moves from seed to seed: a margin over 2 of those "
                      "SDs lets large differences pass as equivalent. They are measured once the first seeds "
                      "finish; `ablate run` and `ablate report` give the margin in SDs and warn if it is wider.",
                      highlight=False)


# What each resolution leaves confounded, in the words of Box, Hunter & Hunter.
_RESOLUTION = {3: "main effects are clear of each other but aliased with two-factor interactions",
               4: "main effects are clear of two-factor interactions, which are aliased with each other",
               5: "main effects and two-factor interactions are clear of each other"}


def two_level(console: Console, design) -> None:
    """A factorial design (`core.factorial.Factorial`): its size against the full factorial, its factors'
    letters and levels, its generators, and which main effects and two-factor interactions it confounds."""
    from ablation.core.factorial import ROMAN, level_word, name

    runs, full, k = len(design.runs), design.full_runs, design.k
    if design.generators:
        words = " = ".join(name(e, s) for e, s in design.words)
        console.print(f"Design: a 2^({k}-{len(design.generators)}) fractional factorial, resolution "
                      f"{ROMAN.get(design.resolution, design.resolution)}: {runs} of the {full} arms of the full "
                      f"factorial, generated by {', '.join(map(str, design.generators))} (defining relation "
                      f"I = {words}). Its {_RESOLUTION.get(design.resolution, 'effects are aliased as below')}.",
                      highlight=False)
    else:
        console.print(f"Design: the full 2^{k} factorial, all {full} arms: every main effect and interaction is "
                      "estimated, none aliased with another.", highlight=False)
    factors = Table(**LIGHT)
    for header in ("factor", "key", "-1", "+1"):
        factors.add_column(header)
    for key, levels in zip(design.factors, design.levels):
        factors.add_row(design.letter(key), key, *map(level_word, levels))
    console.print(factors)
    if not design.generators:
        return
    aliases = Table(**LIGHT)
    for header in ("effect", "aliased with", "in the spec's words"):
        aliases.add_column(header)
    for effect, others in design.alias_table(order=2):
        words = " = ".join(design.describe(e) for e in [effect, *(e for e, _ in others)])
        aliases.add_row(name(effect), " = ".join(name(e, s) for e, s in others) or "-", Name(words))
    _print(console, "Aliases among main effects and two-factor interactions (longer interactions taken as "
                    "negligible):", aliases)


def _macs(n: float) -> str:
    for unit, scale in (("PMAC", 1e15), ("TMAC", 1e12), ("GMAC", 1e9)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n / 1e6:.2f} MMAC"


def _span(seconds: float) -> str:
    """The range an estimate is trusted to: half to twice it."""
    low, high = _duration(seconds / 2), _duration(seconds * 2)
    unit = low.rsplit(" ", 1)[1]
    return f"{low.rsplit(' ', 1)[0]} to {high}" if high.endswith(" " + unit) else f"{low} to {high}"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes / 60
    return f"{hours:.0f} h" if hours < 72 else f"{hours / 24:.0f} days"


def ranking(console: Console, study, summaries) -> None:
    """The configurations of a study (`report.rank`'s summaries), best first."""
    spec, axes = study.spec, study.axes
    # One column for mean ± sd, so two axes (paper.yaml's) still fit in 80 columns.
    title = f"{spec.name}: configurations ranked by best-epoch {spec.metric} ({spec.mode})"
    table = Table(**LIGHT)
    table.add_column("#", justify="right")
    short = len({a.split(".", 1)[-1] for a in axes}) == len(axes)  # names without the section suffice unless they clash
    for axis in axes:
        table.add_column(axis.split(".", 1)[-1] if short else axis)
    spread = "\n± sd" if any(s.std is not None for s in summaries) else ""
    numbers(table, "seeds", spec.metric + spread, "test acc", "test F1", "params")

    def fmt(value: float | None, digits: int = 4) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for i, s in enumerate(summaries, 1):
        ran = s.seeds + s.failed + s.killed
        params = "-" if s.params_total is None else f"{s.params_total / 1e6:.2f}M"
        mean = fmt(s.mean) + ("" if s.std is None else f" ± {s.std:.4f}")
        table.add_row(str(i), *map(Name, s.config.values()), f"{s.seeds}" + (f"/{ran}" if ran > s.seeds else ""),
                      mean, fmt(s.test_accuracy), fmt(s.test_macro_f1), params)
    lost = any(s.failed or s.killed for s in summaries)
    _print(console, title, table, "seeds n/m: n of the m seeds run finished; the others failed, diverged or were "
                                  "killed" if lost else "")


def race(console: Console, race, metric: str) -> None:
    """A race's answers (a `race_report.Race`): each arm's decision, interval and what to check, then why its
    margin makes "equivalent" say little, if it does."""
    from ablation.report.race import race_table

    show(console, race_table(race, metric, compact=True))
    if warning := race.margin_warning(metric):
        console.print(f"[bold red]warning:[/bold red] {escape(warning)}", highlight=False)


def show(console: Console, table) -> None:
    """A report's table (`report_table.Table`) in a terminal: names wrap at their commas, figures do not; its
    lead, what it answers in words, between its title and its rows (a table of words only has none)."""
    shown = Table(**LIGHT) if table.header else None
    if shown is not None:  # cells are text, never markup: "[interval]" is a header, not a style
        shown.add_column(escape(table.header[0]))
        for column in table.header[1:]:
            shown.add_column(escape(column), justify="right", overflow="fold")
        for row in table.rows:
            shown.add_row(Name(row[0]), *map(escape, row[1:]))
    _print(console, table.title, shown, table.footnote, lead=table.lead)


def report(console: Console, made) -> None:
    """A report's tables in their compact form, what their marks mean, its notes and its warnings (last,
    where the eye lands)."""
    from ablation.report.tables import tables

    for table in tables(made, compact=True):
        show(console, table)
    for note in made.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    for warning in made.warnings:
        console.print(f"[bold red]warning:[/bold red] {escape(warning)}", highlight=False, soft_wrap=True)


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
    skipped_by_reason(console, skipped, f"{len(skipped):,} skipped, by reason (--json lists every file):")


def skipped_by_reason(console: Console, skipped: list, title: str) -> None:
    """Skipped inputs under `title`: a count per reason and a few files of each (`records.describe_skipped`)."""
    from ablation.data.records import describe_skipped  # here, not above, so `ablate --help` stays fast

    console.print(title, highlight=False, soft_wrap=True)
    for line in describe_skipped(skipped):
        console.print(escape(line), highlight=False, soft_wrap=True)


def generated(console: Console, root, *, per_class: int, valid_per_class: int) -> None:
    """What `ablate data generate` wrote: exactly these counts per emotion, whichever label rule reads them."""
    root = escape(str(root))
    console.print(f"Wrote {per_class} training and {valid_per_class} validation photos (val and test, split by "
                  f"person) of each emotion to {root}, and of 당황, which readers leave out; look at them with "
                  f"`ablate data summary --dataset aihub --root {root}`", highlight=False, soft_wrap=True)


def study_runs(console: Console, study: str, rows) -> None:
    """`ablate runs`: a study's trial runs (`tracking.RunRow`), by arm and seed."""
    if not rows:
        console.print(f"{study}: no trial runs match.", highlight=False)
        return
    table = Table(**LIGHT)
    table.add_column("run id", no_wrap=True)
    table.add_column("arm")
    numbers(table, "seed")
    table.add_column("ended", no_wrap=True)
    numbers(table, "best")  # the metric is named in the title: its name would squeeze the arms at 80 columns
    table.add_column("kept", no_wrap=True)  # its weights: `superseded` ones were kept, then removed
    for r in rows:
        table.add_row(r.run_id, Name(r.arm), "" if r.seed is None else str(r.seed), r.outcome.replace("_", " "),
                      "" if r.value is None else f"{r.value:.4f}", {"kept": "yes", "unknown": "?"}.get(r.weights, "no"))
    _print(console, f"{study}: {counted(len(rows), 'trial run')}. best: the best epoch's "
                    f"{rows[0].metric.removeprefix('best_')}; kept: whether its weights are kept (ablate explain "
                    f"{study} --arm ARM --seed N explains such a run)", table)


def cue_scores(console: Console, made) -> None:
    """Each run's Grad-CAM scores against the cue masks (`explain.explain_runs` with scoring)."""
    table = Table(title="Grad-CAM (true class) against the cue masks")
    table.add_column("run")
    table.add_column("faces")  # one row per group keeps the table inside 80 columns
    numbers(table, "cue energy", "pointing game")
    for e in made.explained:
        s = made.scores[e.trained.run_id]
        for i, group in enumerate(("all", "occluded", "unoccluded")):
            table.add_row(Name(e.trained.name) if i == 0 else "", group,
                          *[f"{s[k]:.3f}" if k in s else "-" for k in (f"cue_energy_{group}", f"pointing_game_{group}")],
                          end_section=group == "unoccluded")
    table.caption = (f"an evenly spread map would score {next(iter(made.scores.values()))['cue_area_all']:.3f} "
                     "cue energy (the cues' share of the image)")
    console.print(table)
