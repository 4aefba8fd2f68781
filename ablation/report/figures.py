"""The report's pictures, drawn with matplotlib from plain numbers (no MLflow here).

Each function writes one PNG and returns its path. Matplotlib runs headless (Agg): reports are
made on clusters and in CI, where there is no display. Legends sit outside the axes, so they cover
no data; a score's interval is given as (mean, low, high), low and high nan for a single seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _save(figure, path: Path, beside: Sequence = ()) -> Path:
    """Write `figure` as a PNG, its canvas grown ("tight") to hold whatever lies outside the axes: tick
    labels, and legends placed beside them, however long a configuration's name.

    No layout engine fits these into a fixed figure: a long name squeezes the axes to nothing, and
    `tight_layout` (or the constrained layout) then gives up and warns on the user's terminal. So a figure
    of one axes has no engine, and one of several panels (laid out by the constrained layout) names in
    `beside` what it draws outside them, which is left out of its layout."""
    for artist in beside:
        artist.set_in_layout(False)
    # An artist left out of the layout is also left out of "tight"'s box, unless it is named here.
    figure.savefig(path, dpi=120, bbox_inches="tight",
                   bbox_extra_artists=[*figure.get_default_bbox_extra_artists(), *beside])
    plt.close(figure)
    return path


def _whiskers(intervals: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """Matplotlib's asymmetric error bars (2 x N) from (mean, low, high); none for a single seed."""
    below = [mean - low if np.isfinite(low) else 0.0 for mean, low, _ in intervals]
    above = [high - mean if np.isfinite(high) else 0.0 for mean, _, high in intervals]
    return np.array([below, above])


def heatmap(values: Mapping[tuple[str, str], float], rows: Sequence[str], columns: Sequence[str], *,
            row_label: str, column_label: str, title: str, path: Path, higher_is_better: bool = True) -> Path:
    """A grid of `values[(row, column)]`, the better values bright; cells without a value stay blank."""
    grid = np.full((len(rows), len(columns)), np.nan)
    for (row, column), value in values.items():
        grid[rows.index(row), columns.index(column)] = value
    figure, ax = plt.subplots(figsize=(1.6 + 1.1 * len(columns), 1.2 + 0.42 * len(rows)))
    image = ax.imshow(grid, cmap="viridis" if higher_is_better else "viridis_r", aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(column_label)
    ax.set_ylabel(row_label)
    finite = grid[np.isfinite(grid)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            bright = value > middle if higher_is_better else value < middle
            ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=8,
                    color="black" if bright else "white")
    figure.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title)
    return _save(figure, path)


NAMED = 8  # configurations a cost panel names every one of


def cost_scatter(scores: Mapping[str, tuple[float, float, float]], costs: Mapping[str, Mapping[str, float]], *,
                 score_label: str, fronts: Mapping[str, Sequence[str]], path: Path) -> Path:
    """The score (`scores[arm]`: mean, low, high) against each cost (`costs[axis label][arm]`), one panel
    each, with error bars for the intervals; `fronts[axis label]`, the Pareto front, joined in red when
    it holds two or more arms (a single point is no front). Of more than NAMED configurations, only the
    front's are named."""
    figure, axes = plt.subplots(1, len(costs), figsize=(4.6 * len(costs), 4.0), squeeze=False, layout="constrained")
    beside, placed = [], []
    for ax, (axis, spent) in zip(axes[0], costs.items()):
        arms = [a for a in scores if a in spent]
        x = [spent[a] for a in arms]
        ax.errorbar(x, [scores[a][0] for a in arms], yerr=_whiskers([scores[a] for a in arms]), fmt="o",
                    markersize=4, capsize=3, color="tab:blue", ecolor="0.55", zorder=3,
                    label="configuration: mean and 95% interval over seeds")
        # Names start beside their points, towards the middle of the panel; adjustText then moves those
        # that overlap one another or a point apart, with a line to their point. A long name may still
        # pass the panel's edge, so the figure grows to hold the names (`beside`) rather than squeeze them in.
        # Up to NAMED configurations are all named; more would cover the panel, so only its front's are.
        middle = (min(x) + max(x)) / 2 if x else 0
        named = set(arms) if len(arms) <= NAMED else set(fronts.get(axis, ()))
        names = [ax.text(cost, scores[arm][0], arm, fontsize=7, ha="right" if cost > middle else "left")
                 for arm, cost in zip(arms, x) if arm in named]
        for name in names:  # out of the constrained layout, which adjustText runs: long names would collapse it
            name.set_in_layout(False)
        placed.append((ax, names, x, [scores[a][0] for a in arms]))
        beside += names
        front = sorted((spent[a], scores[a][0]) for a in fronts.get(axis, ()) if a in spent)
        if len(front) > 1:
            ax.plot(*zip(*front), color="tab:red", linewidth=1.2, marker="o", markersize=5, zorder=4,
                    label="Pareto front")
        ax.xaxis.set_major_locator(MaxNLocator(5))  # costs like 0.2045 GMACs: more ticks would run together
        ax.set_xlabel(axis)
        ax.set_ylabel(score_label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:  # the front may be drawn in another panel only
        for handle, text in zip(*ax.get_legend_handles_labels()):
            if text not in labels:
                handles, labels = [*handles, handle], [*labels, text]
    beside.append(figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels),
                                fontsize=8, frameon=False))
    # Overlaps are judged once the layout has sized the panels: judged before, two names that the layout
    # then drew closer together were left on top of each other.
    figure.draw_without_rendering()
    for ax, names, x, y in placed:
        if _overlapping(names):
            from adjustText import adjust_text  # 0.7 s to import: only for names that need moving

            # 40 iterations, not adjustText's default of a second's worth: 16 names are apart by then
            # (0.1 s a panel, measured), and a count, unlike a time, moves them alike on every machine.
            adjust_text(names, x=x, y=y, ax=ax, ensure_inside_axes=False, iter_lim=40,
                        arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5})
    return _save(figure, path, beside)


def intervals(scores: Mapping[str, tuple[float, float, float]], *, baseline: str | None, score_label: str,
              title: str, path: Path) -> Path:
    """Each configuration's mean and 95% interval (`scores[arm]`: mean, low, high), one row each in the
    order given, the baseline's mean as a dashed line: a one-axis study's answer at a glance."""
    names = list(scores)
    figure, ax = plt.subplots(figsize=(6.4, 1.0 + 0.38 * len(names)))
    y = np.arange(len(names))[::-1]
    found = [scores[n] for n in names]
    ax.errorbar([f[0] for f in found], y, xerr=_whiskers(found), fmt="o", markersize=5, capsize=3,
                color="tab:blue", ecolor="0.45")
    if baseline in scores:
        ax.axvline(scores[baseline][0], color="0.5", linestyle="--", linewidth=1, label=f"{baseline} (baseline)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_yticks(y, names)
    ax.set_xlabel(score_label)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title)
    return _save(figure, path)


def _overlapping(texts: Sequence) -> bool:
    """Whether any two of `texts` overlap where they are drawn now."""
    if len(texts) < 2:
        return False
    renderer = texts[0].figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def class_bars(per_class: Mapping[str, Mapping[str, tuple[float, float, float]]], classes: Sequence[str], *,
               title: str, path: Path) -> Path:
    """Grouped bars: per class, one bar per configuration (`per_class[config][class]`: mean, low, high),
    whiskers for the intervals."""
    figure, ax = plt.subplots(figsize=(1.2 + 1.3 * len(classes), 4))
    width = 0.8 / max(1, len(per_class))
    x = np.arange(len(classes))
    for i, (config, scores) in enumerate(per_class.items()):
        found = [scores.get(c, (np.nan, np.nan, np.nan)) for c in classes]
        ax.bar(x + i * width - 0.4 + width / 2, [f[0] for f in found], width, label=config,
               yerr=_whiskers(found), capsize=2, error_kw={"elinewidth": 0.8, "ecolor": "0.25"})
    ax.set_xticks(x, classes)
    ax.set_ylabel("test F1")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def learning_curves(curves: Mapping[str, Mapping[int, float]], *, metric: str, path: Path) -> Path:
    """The mean over seeds of `metric` (a label for people) per epoch, one line per configuration."""
    figure, ax = plt.subplots(figsize=(6.5, 4.2))
    for config, by_epoch in curves.items():
        epochs = sorted(by_epoch)
        ax.plot(epochs, [by_epoch[e] for e in epochs], marker="o", markersize=3, linewidth=1, label=config)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no tick at 1.5
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if len(curves) <= 16:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(figure, path)


def race_intervals(paths: Mapping[str, Mapping[int, tuple[float, float]]], *, margin: float, baseline: str,
                   metric: str, path: Path) -> Path:
    """Each arm's sequentially valid interval for its difference from the baseline, seed by seed, with the
    band of practical equivalence (±margin): how a race narrows the question until it is answered."""
    figure, ax = plt.subplots(figsize=(7.5, 3.2 + 0.15 * len(paths)))
    ax.axhspan(-margin, margin, color="0.9", label=f"equivalent (±{margin:g})")
    ax.axhline(0, color="0.5", linewidth=0.8)
    offsets = np.linspace(-0.25, 0.25, max(1, len(paths)))
    for offset, (arm, by_seeds) in zip(offsets, paths.items()):
        seeds = sorted(n for n, (low, high) in by_seeds.items() if np.isfinite(low) and np.isfinite(high))
        if not seeds:
            continue
        lows, highs = [by_seeds[n][0] for n in seeds], [by_seeds[n][1] for n in seeds]
        middle = [(lo + hi) / 2 for lo, hi in zip(lows, highs)]
        ax.errorbar([n + offset for n in seeds], middle, yerr=[np.subtract(middle, lows), np.subtract(highs, middle)],
                    fmt="o-", markersize=3, capsize=3, label=arm)
    every = sorted({n for by_seeds in paths.values() for n in by_seeds})
    if every:
        ax.set_xticks(range(every[0], every[-1] + 1))
    ax.set_xlabel("seeds (pairs with the baseline)")
    ax.set_ylabel(f"{metric}: arm - {baseline}")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title("race: each arm's sequentially valid interval as its seeds arrive", fontsize=10)
    return _save(figure, path)
