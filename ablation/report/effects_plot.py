"""The half-normal plot of a factorial study's effects (Daniel 1959, "Use of half-normal plots in
interpreting factorial two-level experiments", Technometrics 1(4)): each effect's size against where it
would sit if every effect were noise, so the real ones stand off the line; those and the largest are labelled.

Headless (Agg) and saved as `figures` saves: a PNG grown ("tight") to hold its labels. Effect and metric
names are the user's, drawn as plain text (no mathtext: a `$` in a name is a dollar sign).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from scipy import stats  # noqa: E402

from ablation.stats.effects import LENTH, EffectsFit  # noqa: E402


LARGEST_NAMED = 3  # named even when none stands out: the largest are what a reader looks for first


def named(effects, alpha: float) -> list[bool]:
    """Which of `effects` (in increasing |effect|) the plot names: the Holm-significant, and the largest few."""
    return [e.p_holm < alpha or i >= len(effects) - LARGEST_NAMED for i, e in enumerate(effects)]


def half_normal(fit: EffectsFit, *, metric: str, path: Path, join: str = ":") -> Path:
    """|effect| (x) against half-normal quantiles (y), the Holm-significant effects and the largest few
    labelled (an interaction's factors joined by `join`); the line is where noise of the fit's standard
    error would put them (Lenth's PSE with one seed)."""
    effects = sorted(fit.effects, key=lambda e: abs(e.estimate))
    m = len(effects)
    size = np.array([abs(e.estimate) for e in effects])
    # Half-normal scores: the quantile of |Z| at the i-th of m plotting positions (i - 1/2) / m.
    quantile = stats.norm.ppf(0.5 + 0.5 * (np.arange(1, m + 1) - 0.5) / m)
    significant = np.array([e.p_holm < fit.alpha for e in effects])
    positive = np.array([e.estimate > 0 for e in effects])
    figure, ax = plt.subplots(figsize=(5.6, 4.4))
    for chosen, colour, text in ((positive, "tab:blue", "positive"), (~positive, "tab:red", "negative")):
        ax.scatter(size[chosen & ~significant], quantile[chosen & ~significant], s=22, facecolors="none",
                   edgecolors=colour, label=f"{text} effect")
        ax.scatter(size[chosen & significant], quantile[chosen & significant], s=30, color=colour,
                   label=f"{text}, Holm p < {fit.alpha:g}")
    se = np.nanmedian([e.se for e in effects]) if m else np.nan
    if np.isfinite(se) and se > 0:
        reach = np.array([0.0, max(quantile.max(initial=0.0), 0.5) * 1.05])
        ax.plot(reach * se, reach, color="0.55", linewidth=0.9, linestyle="--",
                label="noise alone (Lenth's PSE)" if fit.method == LENTH else "noise alone (standard error)")
    for e, x, y, flagged in zip(effects, size, quantile, named(effects, fit.alpha)):
        if flagged:
            # To the right: the axis and its label are on the left, and the noise line leaves room there.
            ax.annotate(join.join(e.factors), (x, y), xytext=(6, -1), textcoords="offset points", ha="left",
                        va="center", fontsize=8, parse_math=False)
    ax.xaxis.set_major_locator(MaxNLocator(5))  # effects like 0.0125: more ticks would run together
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(f"|effect| on {metric}", parse_math=False)
    ax.set_ylabel("half-normal quantile")
    ax.set_title(f"Effects on {metric}" + (" (one seed: Lenth's PSE)" if fit.method == LENTH else ""),
                 fontsize=10, parse_math=False)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    shown = [(h, t) for h, t in zip(handles, labels) if not _empty(h)]
    # Below the axes: beside them, the largest effect's name (written right of its point) ran under it.
    ax.legend(*zip(*shown), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(shown),
              frameon=False)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def _empty(handle) -> bool:
    """A scatter with no points (no negative effect, say) has nothing to explain in the legend."""
    offsets = getattr(handle, "get_offsets", None)
    return offsets is not None and len(offsets()) == 0
