"""Choosing `ablation.stats.paired_checks`' thresholds by simulation: how often the flag fires on Gaussian paired
differences (false alarms) and how often it catches the race's false claims under skewed ones, at the
seed counts a race decides at (3-20).

    .venv/bin/python benchmarks/paired_checks.py [--studies 2000] [--draws 100000] [--seed 7]

1. Unconditional rates per n = 3..20: Gaussian samples (each rule, and the flag), and samples with a
   departure that IS in the sample (a centred lognormal; one seed of n collapsed by 5 or 10 SDs).
2. The arms a race decided, simulated with benchmarks/race.py's mirror of `ablation.stats.racing` (start 3,
   alpha 0.05, margin 0 or 2 SD): the differences each arm was decided on, checked under every candidate
   pair of thresholds (skewness limit in standard errors, outlier Bonferroni level). Gaussian decisions
   (any flag is a false alarm), quantised accuracies on 200 images, and false claims under skewed nulls.
3. The permutation p-value: `permutation_p` against a brute-force enumeration of all 2^n sign flips, and
   its cost per call.
Writes benchmarks/results/paired_checks.{json,md}.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np
import race_simulate as RS  # benchmarks/: the scenario generators
import race_vectorised as RV  # the race's vectorised mirror
from results_file import publish  # benchmarks/, the script's own folder
from scipy import stats

from ablation.stats import paired_checks as pc

SKEW_SES = (1.5, 2.0, 2.5)  # candidate skewness limits, in standard errors under normality
OUTLIER_LEVELS = (0.01, 0.05, 0.1)  # candidate Bonferroni levels of the leave-one-out t
CHOSEN = (pc.SKEW_SE, pc.OUTLIER_LEVEL)
NS = tuple(range(3, 21))
CONFIGS = ((5, 8), (5, 20), (15, 20))
ALPHA = 0.05


def skew_se(n: int) -> float:
    return math.sqrt(6.0 * n * (n - 1) / ((n - 2) * (n + 1) * (n + 3)))


def limits(n: int, c: float, q: float) -> tuple[float, float]:
    """The skewness and |z| limits at n for candidate (c, q): `paired_checks`' formulas."""
    if n < 3:
        return math.inf, math.inf
    return c * skew_se(n), float(stats.t.isf(q / (2 * n), n - 2))


def rates(samples: list[tuple[int, np.ndarray, np.ndarray]]) -> dict[tuple[float, float], dict]:
    """Flag rates for every candidate over scored samples [(n, skewness, z), ...] (grouped by n)."""
    total = sum(len(s) for _, s, _ in samples)
    out = {}
    for c, q in itertools.product(SKEW_SES, OUTLIER_LEVELS):
        skewed = outlying = either = 0
        for n, skew, z in samples:
            ls, lz = limits(n, c, q)
            with np.errstate(invalid="ignore"):
                a, b = np.abs(skew) > ls, np.abs(z) > lz
            skewed, outlying, either = skewed + int(a.sum()), outlying + int(b.sum()), either + int((a | b).sum())
        out[c, q] = {"skew": skewed / total if total else None, "outlier": outlying / total if total else None,
                     "flag": either / total if total else None}
    return out


def score_rows(rows_by_n: dict[int, np.ndarray]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    out = []
    for n, rows in sorted(rows_by_n.items()):
        skew, _, z = pc.scores(rows)
        out.append((n, skew, z))
    return out


def decided_samples(D: np.ndarray, used: np.ndarray, arms: np.ndarray) -> dict[int, np.ndarray]:
    """The differences each (study, arm) in `arms` was decided on, grouped by its seeds."""
    by_n: dict[int, list] = {}
    for s, k in arms:
        by_n.setdefault(int(used[s, k]), []).append(D[s, k, :used[s, k]])
    return {n: np.array(v) for n, v in by_n.items()}


def lognormal(rng, shape, sigma=0.6):
    y = (np.exp(sigma * rng.standard_normal(shape)) - math.exp(sigma ** 2 / 2)) \
        / math.sqrt((math.exp(sigma ** 2) - 1) * math.exp(sigma ** 2))
    return y


def brute_force_p(x: np.ndarray) -> float:
    """Two-sided sign-flip p-value over all 2^n sign vectors, as P(|mean| >= |observed|) up to ties."""
    n = len(x)
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=n)))
    means = signs @ x / n
    obs = x.mean()
    tol = 100 * np.finfo(float).eps * abs(obs)
    return float(min(1.0, 2 * min((means >= obs - tol).mean(), (means <= obs + tol).mean())))


def fmt(x):
    return "-" if x is None else f"{x:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=2000, help="simulated races per scenario")
    parser.add_argument("--draws", type=int, default=100_000, help="samples per n for the unconditional rates")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    began = time.time()
    rng = np.random.default_rng(args.seed)
    S, M = args.studies, args.draws
    for n in (5, 12, 20):  # the benchmark's formulas are the module's
        assert limits(n, *CHOSEN) == (pc.skewness_limit(n), pc.outlier_limit(n))
    result: dict = {"chosen": {"skew_se": CHOSEN[0], "outlier_level": CHOSEN[1]},
                    "limits": {n: {"skewness": pc.skewness_limit(n), "outlier_z": pc.outlier_limit(n)} for n in NS}}
    c0, q0 = CHOSEN
    lines = ["# Paired checks: choosing the thresholds by simulation", "",
             f"`.venv/bin/python benchmarks/paired_checks.py` — {M:,} samples per n, {S:,} simulated races per "
             "scenario. `ablation.stats.paired_checks.check` flags the paired differences an arm was decided on when "
             "their skewness (adjusted Fisher–Pearson G1) exceeds c standard errors of G1 under normality, "
             "se(n) = √(6n(n−1)/((n−2)(n+1)(n+3))), or when the seed farthest from the mean has a leave-one-out "
             "studentised z whose Bonferroni p-value n·2·P(t_{n−2} > |z|) is below q (z is exactly t_{n−2} "
             "under normality, so that rule's false-alarm rate is q at every n).", "",
             f"**Chosen: c = {c0:g}, q = {q0:g}.** The limits at each n:", "",
             "| n | " + " | ".join(str(n) for n in NS) + " |", "|---|" + "---|" * len(NS),
             "| |skewness| > | " + " | ".join(f"{pc.skewness_limit(n):.2f}" for n in NS) + " |",
             "| |z| > | " + " | ".join(f"{pc.outlier_limit(n):.1f}" for n in NS) + " |", "",
             "G1 is bounded at small n (|G1| ≤ 1.73 at n = 3, 2.0 at n = 4), so the skewness rule cannot fire "
             "below 5 seeds; the outlier rule can, but needs |z| of 38 at n = 3 and 8.9 at n = 4."]

    # 1. unconditional rates per n -------------------------------------------------------------------
    per_n = []
    for n in NS:
        row = {"n": n}
        for name, draw in (("gaussian", lambda sh: rng.standard_normal(sh)),
                           ("lognormal", lambda sh: lognormal(rng, sh)),
                           ("one seed collapsed by 5 SD", lambda sh: rng.standard_normal(sh) - 5.0 * (
                               np.arange(sh[1]) == 0)),
                           ("one seed collapsed by 10 SD", lambda sh: rng.standard_normal(sh) - 10.0 * (
                               np.arange(sh[1]) == 0))):
            x = draw((M, n))
            skew, index, z = pc.scores(x)
            r = rates([(n, skew, z)])
            row[name] = {f"{c:g},{q:g}": v for (c, q), v in r.items()}
            if "collapsed" in name:
                row[name]["right_seed"] = float((index == 0).mean())
        per_n.append(row)
    result["per_n"] = per_n
    key = f"{c0:g},{q0:g}"
    lines += ["", "## Rates per n, chosen thresholds", "",
              f"Share of {M:,} samples of n flagged: skewness rule / outlier rule / either (the flag). Gaussian: "
              "false alarms. Lognormal (centred, σ 0.6, skewness 2.3) and one collapsed seed among n Gaussian "
              "ones: departures that are in the sample.", "",
              "| n | Gaussian | lognormal | one seed −5 SD | one seed −10 SD |", "|---|---|---|---|---|"]
    for row in per_n:
        cells = []
        for name in ("gaussian", "lognormal", "one seed collapsed by 5 SD", "one seed collapsed by 10 SD"):
            v = row[name][key]
            cells.append(f"{v['skew']:.3f} / {v['outlier']:.3f} / **{v['flag']:.3f}**")
        lines.append(f"| {row['n']} | " + " | ".join(cells) + " |")
    g = [row["gaussian"][key]["flag"] for row in per_n if row["n"] >= 5]
    gs = [row["gaussian"][key]["skew"] for row in per_n if row["n"] >= 5]
    go = [row["gaussian"][key]["outlier"] for row in per_n]

    def first_n(name, share=0.5):
        return next((row["n"] for row in per_n if row[name][key]["flag"] >= share), None)
    result["first_n_caught_half"] = {name: first_n(name) for name in
                                     ("lognormal", "one seed collapsed by 5 SD", "one seed collapsed by 10 SD")}
    found = result["first_n_caught_half"]
    lines += ["", f"Under Gaussian differences the flag fires on {min(g):.3f}–{max(g):.3f} of samples at n = 5–20 "
              f"(the skewness rule alone {min(gs):.3f}–{max(gs):.3f}, the outlier rule {min(go):.3f}–{max(go):.3f} "
              "at every n; they overlap). Departures in the sample are caught in at least half the samples from "
              f"n = {found['one seed collapsed by 10 SD']} (one seed −10 SD), "
              f"n = {found['one seed collapsed by 5 SD']} (one seed −5 SD) and n = {found['lognormal']} (lognormal)."]

    # 2. the arms a race decided ------------------------------------------------------------------------
    scenarios = []
    for K, N in CONFIGS:
        cases = []
        for margin in (2.0, 0.0):
            deltas = np.zeros((S, K))
            X = RS.simulate(S, deltas, N, rng)
            D = X[:, 1:] - X[:, :1]
            st, used = RV.race(D, RS.START, margin, ALPHA, scale=RV.metric_scale(X))
            pick = np.argwhere(st != RV.UNDECIDED_)
            label = ("Gaussian null, margin 2 SD: decided arms" if margin else
                     "Gaussian null, margin 0: false claims")
            cases.append((label, "false alarm", decided_samples(D, used, pick)))
        deltas = RS.scenario("b", S, K, 2.0, rng)
        X = RS.simulate(S, deltas, N, rng)
        D = X[:, 1:] - X[:, :1]
        st, used = RV.race(D, RS.START, 2.0, ALPHA, scale=RV.metric_scale(X))
        cases.append(("Gaussian, 2-4 arms 0.5-2 SD off, margin 2 SD: decided arms", "false alarm",
                      decided_samples(D, used, np.argwhere(st != RV.UNDECIDED_))))
        for label, level, discord in RS.QUANTISED[1:]:
            sd = RS.quantised_sd(level, discord)
            X = RS.simulate_quantised(S, np.zeros((S, K)), N, rng, level, discord)
            D = X[:, 1:] - X[:, :1]
            st, used = RV.race(D, RS.START, 2 * sd, ALPHA, scale=RV.metric_scale(X))
            cases.append((f"accuracy on 200 images, paired SD {label}, null, margin 2 SD: decided arms",
                          "no claim is false: any flag is noise",
                          decided_samples(D, used, np.argwhere(st != RV.UNDECIDED_))))
        for kind in RS.SKEWED:
            X = RS.simulate_skewed(kind, S, K, N, rng)
            D = X[:, 1:] - X[:, :1]
            st, used = RV.race(D, RS.START, 0.0, ALPHA, scale=RV.metric_scale(X))
            cases.append((f"{kind} null, margin 0: false claims", "catch",
                          decided_samples(D, used, np.argwhere((st == RV.BETTER_) | (st == RV.WORSE_)))))
        for label, kind, samples in cases:
            count = sum(len(v) for v in samples.values())
            seeds = (sum(n * len(v) for n, v in samples.items()) / count) if count else None
            scored = score_rows(samples)
            r = rates(scored)
            flagged = infinite = 0
            for n, skew, z in scored:
                a, b = pc.flags(n, skew, z)
                flagged += int((a | b).sum())
                infinite += int(((a | b) & np.isinf(z)).sum())
            scenarios.append({"K": K, "max": N, "case": label, "kind": kind, "arms": count, "mean_seeds": seeds,
                              "rates": {f"{c:g},{q:g}": v for (c, q), v in r.items()},
                              "infinite_z_share_of_flagged": infinite / flagged if flagged else None})
    result["races"] = scenarios
    lines += ["", "## The arms a race decided", "",
              f"{S:,} simulated races per row (benchmarks/race.py's mirror of `ablation.stats.racing`, start 3, α = 0.05, "
              "margin in paired SDs), each decided arm checked on the differences it was decided on. Share of "
              "those arms flagged (either rule) for each candidate c (skewness limit, standard errors) and q "
              "(outlier level); the chosen pair in bold. 'Skewed' nulls: `race.simulate_skewed` (lognormal: "
              "centred, σ 0.6; collapse: one seed in ten loses 5 bulk SDs, the arm 0.56 bulk SD better "
              "otherwise), every arm's true mean difference 0, so every claim is false.", "",
              "| K | max | arms (mean seeds) | case | "
              + " | ".join(("**" if (c, q) == CHOSEN else "") + f"c {c:g}, q {q:g}" + ("**" if (c, q) == CHOSEN else "")
                           for c, q in itertools.product(SKEW_SES, OUTLIER_LEVELS)) + " |",
              "|---|---|---|---|" + "---|" * (len(SKEW_SES) * len(OUTLIER_LEVELS))]
    for sc in scenarios:
        cells = []
        for c, q in itertools.product(SKEW_SES, OUTLIER_LEVELS):
            v = sc["rates"][f"{c:g},{q:g}"]["flag"]
            cells.append("-" if v is None else (f"**{v:.3f}**" if (c, q) == CHOSEN else f"{v:.3f}"))
        lines.append(f"| {sc['K']} | {sc['max']} | {sc['arms']} ({fmt(sc['mean_seeds']) if sc['arms'] else '-'}) | "
                     f"{sc['case']} | " + " | ".join(cells) + " |")

    def span(prefix, k=key):
        v = [sc["rates"][k]["flag"] for sc in scenarios if sc["case"].startswith(prefix) and sc["arms"]]
        return (min(v), max(v)) if v else (math.nan, math.nan)

    def candidate(k):
        fa = [span(p, k) for p in ("Gaussian null, margin 2", "Gaussian null, margin 0", "Gaussian, 2-4")]
        qa = [span(f"accuracy on 200 images, paired SD {label}", k) for label, _, _ in RS.QUANTISED[1:]]
        return {"gaussian_false_alarm": [min(x[0] for x in fa), max(x[1] for x in fa)],
                "lognormal_catch": list(span("lognormal", k)), "collapse_catch": list(span("collapse", k)),
                "quantised_decided_flagged": [min(x[0] for x in qa), max(x[1] for x in qa)]}
    summary = {f"{c:g},{q:g}": candidate(f"{c:g},{q:g}") for c, q in itertools.product(SKEW_SES, OUTLIER_LEVELS)}
    result["summary"] = summary
    mine = summary[key]
    (lo_fa, hi_fa), ln, co, qa = (mine["gaussian_false_alarm"], mine["lognormal_catch"], mine["collapse_catch"],
                                  mine["quantised_decided_flagged"])
    infinite = [sc["infinite_z_share_of_flagged"] for sc in scenarios
                if sc["case"].startswith("accuracy") and sc["infinite_z_share_of_flagged"] is not None]
    loosest = summary[f"{min(SKEW_SES):g},{max(OUTLIER_LEVELS):g}"]
    lines += ["", "## The choice", "",
              "Per candidate, over the rows above: the flag's range on arms decided on Gaussian differences (false "
              "alarms), on false claims under the two skewed nulls (catches), and on arms decided on quantised "
              "accuracies.", "",
              "| c | q | false alarms (Gaussian) | lognormal false claims flagged | collapse false claims flagged | "
              "quantised decided arms flagged |", "|---|---|---|---|---|---|"]
    for c, q in itertools.product(SKEW_SES, OUTLIER_LEVELS):
        v = summary[f"{c:g},{q:g}"]
        cells = [f"{a:.3f}–{b:.3f}" for a, b in (v["gaussian_false_alarm"], v["lognormal_catch"],
                                                  v["collapse_catch"], v["quantised_decided_flagged"])]
        bold = (c, q) == CHOSEN
        lines.append(f"| {'**' if bold else ''}{c:g} | {q:g}{'**' if bold else ''} | " + " | ".join(cells) + " |")
    lines += ["",
              f"- **False alarms.** With c = {c0:g}, q = {q0:g} the flag fires on {lo_fa:.3f}–{hi_fa:.3f} of the "
              "arms decided on Gaussian differences (null or not, margin 0 or 2 SD): about one decided arm in "
              "twenty, a rate a report can show without crying wolf.",
              f"- **Catches.** Of the false claims under the lognormal null it flags {ln[0]:.3f}–{ln[1]:.3f} (the "
              "higher at max 20, where the claims come later and rest on more seeds); of those under the "
              f"collapse null, {co[0]:.3f}–{co[1]:.3f}, close to its false-alarm rate. **Most false claims under "
              "skew are not caught at any candidate that keeps false alarms rare**: the loosest (c = "
              f"{min(SKEW_SES):g}, q = {max(OUTLIER_LEVELS):g}) catches at most {loosest['lognormal_catch'][1]:.3f} "
              f"(lognormal) and {loosest['collapse_catch'][1]:.3f} (collapse) at "
              f"{loosest['gaussian_false_alarm'][0]:.3f}–{loosest['gaussian_false_alarm'][1]:.3f} false alarms. "
              "The table per n says why: the flag does catch a collapse or a skewed bulk that is IN the sample, "
              "but a race's false claim under a skewed null rests on seeds that missed the tail (a collapsing "
              "arm called better had no collapse among its seeds, a lognormal arm called worse no seed in its "
              "long tail), and those look Gaussian. The flag is a warning that a decision rests on "
              "non-Gaussian differences, not a detector of false claims; against rare collapses the remedies "
              "are a margin (benchmarks/results/race.md: at 2 SD the race's FWER stays near 0 under both skewed "
              "nulls, where the fixed design's does not) or a check pooled across the study's arms.",
              f"- **Quantised accuracies** (200 images, paired SD of one or two images): the flag fires on "
              f"{qa[0]:.3f}–{qa[1]:.3f} of the decided arms; "
              + (f"{min(infinite):.2f}–{max(infinite):.2f} of those flags are seeds that moved while all the "
                 "others tied (z infinite, reason 'all other seeds equal'). " if infinite else "")
              + "The race's error rates hold on these metrics (race.md), so such flags are noise a reader can "
              "recognise by that reason."]

    # 3. the permutation p-value ---------------------------------------------------------------------
    agree, worst, timing = 0, 0.0, {}
    for n in (3, 5, 8, 10, 12):
        for _ in range(20):
            x = rng.standard_normal(n) + rng.choice([0.0, 1.0])
            if rng.random() < 0.3:
                x = np.round(x * 4) / 4  # ties
            p, b = pc.permutation_p(x), brute_force_p(x)
            worst = max(worst, abs(p - b))
            agree += abs(p - b) < 1e-12
    for n in (5, 10, 14, 15, 20):
        x = rng.standard_normal(n)
        t0 = time.perf_counter()
        for _ in range(5):
            pc.permutation_p(x)
        timing[n] = (time.perf_counter() - t0) / 5
    result["permutation"] = {"agree_with_brute_force": agree, "of": 100, "largest_gap": worst,
                             "seconds_per_call": timing}
    lines += ["", "## The permutation p-value", "",
              f"`permutation_p` (scipy.stats.permutation_test, one sample, permutation_type 'samples', which flips "
              f"signs; {pc.PERMUTATIONS:,} resamples: exact over all 2^n flips for n ≤ 14, random flips from a fixed "
              f"seed beyond) equals a brute-force enumeration of all 2^n sign flips on {agree} of 100 samples "
              f"(n = 3–12, a third with ties; largest gap {worst:.1e}). Seconds per call: "
              + ", ".join(f"n = {n}: {t:.3f}" for n, t in timing.items()) + "."]

    result["seconds"] = time.time() - began
    lines += ["", f"({result['seconds']:.0f} s)"]
    publish("paired_checks", result, lines)


if __name__ == "__main__":
    main()
