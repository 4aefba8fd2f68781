"""The report's pictures, drawn with matplotlib from plain numbers (no MLflow here).

Each function writes one PNG and returns its path. Matplotlib runs headless (Agg): reports are
made on clusters and in CI, where there is no display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def heatmap(values: Mapping[tuple[str, str], float], rows: Sequence[str], columns: Sequence[str], *,
            row_label: str, column_label: str, title: str, path: Path) -> Path:
    """A grid of `values[(row, column)]`; cells without a value stay blank."""
    grid = np.full((len(rows), len(columns)), np.nan)
    for (row, column), value in values.items():
        grid[rows.index(row), columns.index(column)] = value
    figure, ax = plt.subplots(figsize=(1.6 + 1.1 * len(columns), 1.2 + 0.42 * len(rows)))
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(column_label)
    ax.set_ylabel(row_label)
    finite = grid[np.isfinite(grid)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=8,
                    color="black" if value > middle else "white")
    figure.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title)
    return _save(figure, path)


def cost_scatter(points: Mapping[str, Mapping[str, float]], *, score: str, costs: Sequence[str],
                 fronts: Mapping[str, Sequence[str]], path: Path) -> Path:
    """`score` against each of `costs`, one panel each, the Pareto front (`fronts[cost]`) joined."""
    figure, axes = plt.subplots(1, len(costs), figsize=(5.2 * len(costs), 4.2), squeeze=False)
    for ax, cost in zip(axes[0], costs):
        for arm, figures in points.items():
            on_front = arm in fronts[cost]
            ax.scatter(figures[cost], figures[score], s=36 if on_front else 18,
                       color="tab:red" if on_front else "tab:blue", zorder=3)
            ax.annotate(arm, (figures[cost], figures[score]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = sorted((points[arm][cost], points[arm][score]) for arm in fronts[cost])
        if front:
            ax.plot(*zip(*front), color="tab:red", linewidth=1, label="Pareto front")
            ax.legend(loc="best", fontsize=8)
        ax.set_xlabel(cost)
        ax.set_ylabel(score)
        ax.grid(alpha=0.3)
    return _save(figure, path)


def class_bars(per_class: Mapping[str, Mapping[str, float]], classes: Sequence[str], *, title: str,
               path: Path) -> Path:
    """Grouped bars: per class, one bar per configuration (`per_class[config][class]`)."""
    figure, ax = plt.subplots(figsize=(1.2 + 1.3 * len(classes), 4))
    width = 0.8 / max(1, len(per_class))
    x = np.arange(len(classes))
    for i, (config, scores) in enumerate(per_class.items()):
        ax.bar(x + i * width - 0.4 + width / 2, [scores.get(c, np.nan) for c in classes], width, label=config)
    ax.set_xticks(x, classes)
    ax.set_ylabel("test F1")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def learning_curves(curves: Mapping[str, Mapping[int, float]], *, metric: str, path: Path) -> Path:
    """The mean over seeds of `metric` per epoch, one line per configuration."""
    figure, ax = plt.subplots(figsize=(6.5, 4.2))
    for config, by_epoch in curves.items():
        epochs = sorted(by_epoch)
        ax.plot(epochs, [by_epoch[e] for e in epochs], marker="o", markersize=3, linewidth=1, label=config)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if len(curves) <= 16:
        ax.legend(fontsize=7, ncol=2)
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
