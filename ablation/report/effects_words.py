"""The effects model in words: one sentence per significant effect, as a paper's ablation section writes it
("model.placement.layer3 = on rather than off raises val_macro_f1 by 0.021 (95% CI +0.008 to +0.034,
Holm p = 0.010)"). Plain text: each renderer escapes it for its own format."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ablation.stats.effects import Effect, EffectsFit


def sentences(fit: EffectsFit, metric: str, *, levels: Mapping[str, tuple[Any, Any]] | None = None,
              digits: int = 3, join: str = ":") -> list[str]:
    """A sentence per effect whose Holm-adjusted p-value is below the fit's alpha: main effects first, then
    interactions, the larger first within each; one sentence saying so when there is none. `levels` names
    each factor's (low, high) levels, as the spec writes them; without them they are "low" and "high".
    `join` writes an interaction's factors together in an alias (" x ", as a report's table names them)."""
    found = sorted(fit.significant(), key=lambda e: (len(e.factors), -abs(e.estimate)))
    if not found:
        return [f"No main effect or two-factor interaction on {metric} is distinguishable from seed noise "
                f"(every Holm-adjusted p ≥ {fit.alpha:g})."]
    return [_sentence(e, fit, metric, levels or {}, digits, join) for e in found]


def _sentence(effect: Effect, fit: EffectsFit, metric: str, levels: Mapping[str, tuple[Any, Any]], digits: int,
              join: str) -> str:
    confidence = f"{fit.confidence * 100:g}% CI"
    p = "Holm p < 0.001" if effect.p_holm < 0.001 else f"Holm p = {effect.p_holm:.3f}"
    if len(effect.factors) == 1:
        (factor,) = effect.factors
        low, high = levels.get(factor, ("low", "high"))
        change = "raises" if effect.estimate > 0 else "lowers"
        text = (f"{_at(factor, high, levels)} rather than {low} {change} {metric} by {abs(effect.estimate):.{digits}f} "
                f"({confidence} {effect.low:+.{digits}f} to {effect.high:+.{digits}f}, {p})")
    else:
        # Both high against both low, less each high alone: 4 b_AB, twice the classic interaction effect.
        gap, low, high = 2 * effect.estimate, 2 * effect.low, 2 * effect.high
        both = " and ".join(_at(f, levels.get(f, ("low", "high"))[1], levels) for f in effect.factors)
        text = (f"{both} together are worth {abs(gap):.{digits}f} {metric} {'more' if gap > 0 else 'less'} than the "
                f"sum of each alone ({confidence} {low:+.{digits}f} to {high:+.{digits}f}; "
                f"interaction effect {effect.estimate:+.{digits}f}, {p})")
    if effect.aliases:
        named = [(a.startswith("-"), join.join(a.lstrip("-").split(":"))) for a in effect.aliases]
        chain = " ".join(f"- {a}" if negative else f"+ {a}" for negative, a in named)
        text += f"; it is confounded with {', '.join(a for _, a in named)}: the estimate is " \
                f"{join.join(effect.factors)} {chain}"
    return text + "."


def _at(factor: str, level: Any, levels: Mapping[str, tuple[Any, Any]]) -> str:
    return f"{factor} = {level}" if factor in levels else f"{factor} {level}"
