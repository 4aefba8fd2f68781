"""Racing seeds, measured: the family-wise error, power and cost of `ablation.stats.racing` against the fixed
design (every arm max seeds) and the naive race (a t-test after every seed), by simulation at the sizes
a study uses (start 3 seeds, max 8-20, 5 or 15 arms against a baseline).

    .venv/bin/python benchmarks/race.py [--tracking-uri URI --study NAME [--metric test_macro_f1]]
                                        [--sd SD] [--studies 2000] [--margin 2.0] [--quick]
    .venv/bin/python benchmarks/race.py --only quantised,skewed [--studies 2000] [--quantised-studies 10000]

Paired seed noise comes from a real study: given --tracking-uri and --study, the study is read back from
MLflow (`ablation.tracking.find_study` / `study_trials`) and the SD of the paired difference arm -
baseline is pooled over its arms (`--metric`, default test_macro_f1); its two-way (arm x seed) residuals
also drive a non-Gaussian check. With neither, a small real study is run first with the tool itself
(quickstart.yaml at 32 px, 6 seeds, into a temporary store: minutes on 2 cores) and read back. --sd
skips the study (Gaussian noise of that SD only). Every procedure here is scale-free, so effects and the
margin are set in units of that SD and converted to the metric for the record.

Real metrics (also in a full run): scores quantised as accuracy on 200 images
(`race_simulate.simulate_quantised`: ties and zero-spread prefixes, the guard given the metric's scale), and
strongly skewed paired differences (`race_simulate.simulate_skewed`), with what `ablation.stats.paired_checks`
flags on the decisions. `--only` runs just these sections and merges them into the published results (the rest
of the file keeps the full run's figures, checked against a fresh simulation of the chosen method's rows).

Each vectorised simulator (race_vectorised.py) mirrors `ablation.stats.racing` exactly (each prefix's variance
about its own mean, no rule on a look without spread, an equivalent arm that Holm rejects later becoming better
or worse); `race_library.cross_check` runs the library's own `decide`, `naive_decide` and `fixed_decide` on a
sample of the simulated studies and stops if a single decision differs. Writes benchmarks/results/race.{json,md}.

The modules beside this one (benchmarks/, imported by plain name), one responsibility each:
race_simulate.py, the studies simulated (their design, the seed noise of a real study, and the generators:
Gaussian or resampled, quantised, skewed); race_vectorised.py, the procedures vectorised over studies (race,
fixed design, naive race, mode "best") and the candidate boundaries; race_library.py, the library itself on a
sample of them (the cross-checks) and under asynchronous arrival; race_measures.py, what the decisions score
and how a figure prints; race_method.py, a full run's sections on the method (boundaries, candidates, the test
alone, the chosen method, margins, asynchronous arrival, mode "best", non-Gaussian noise);
race_real_metrics.py, the real-metric sections and the `--only` merge. This file: the command line, the
guarantee's text, the targets, and the order the sections run in.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from race_measures import mc, pct  # benchmarks/, the script's own folder
from race_method import (async_section, best_section, boundary_section, candidates_section, chosen_section,
                         half_widths_section, margins_section, non_gaussian_section, test_alone_section)
from race_real_metrics import NEW_SECTIONS, merge, new_sections, quantised_studies
from race_simulate import ALPHA, CONFIGS, EFFECTS, START, Noise, read_noise, run_real_study
from results_file import publish

GUARANTEE = """\
Racing decides each arm against the baseline from the paired differences (arm − baseline) on the longest
prefix of the study's seed order that both have finished, so the looks fall at n = start, …, max pairs
whatever order the trials finish in. **Better/worse** is a group-sequential paired t-test: Lan–DeMets
alpha spending α·(n/max)⁸ over those looks (back-loaded, so that the last look keeps nearly the fixed
design's power), with boundaries computed for the t statistic itself, unknown variance included (under
"no difference" the t statistics of a Gaussian sample form a Markov chain whose law does not depend on σ,
which `ablation.stats.boundaries.boundary` integrates numerically; exact up to that integration, checked by Monte
Carlo below, whereas the usual normal-theory boundaries exceed their level by 10–25 % at 3–20 seeds). An arm's
sequential p-value, the smallest level whose boundary its path has crossed, is valid at every look, so
Holm's step-down across the K arms, applied at every look, keeps the family-wise error at α: a first
false rejection needs the smallest of the m₀ true nulls' p-values to reach α/m₀, which has probability
≤ m₀·α/m₀. **Equivalent** means the arm's repeated confidence interval (the running intersection of
mean ± cₙ·sₙ/√n, Pocock-type spending, one-sided level e per side) lies inside ±margin, a sequential
TOST, with the same Holm step-down over the arms (e = α/K, α/(K−1), …). **The guarantee**: if the paired
differences are Gaussian (any variance, any correlation between arms, any order of finishing), then
P(some arm whose true mean difference is 0 is ever declared better or worse) ≤ α, and P(some arm whose
true difference is at least the margin in size is ever declared equivalent) ≤ α; an arm that reaches
max seeds undecided is reported "undecided at max". The two bounds are separate (as for a fixed-design
t-test plus TOST), so a study that contains both kinds of arm could make one error of each kind with
probability up to 2α in all. Mode "best" (arms drop out once significantly worse than another arm) tests
every pair at α/(2(A−1)) per side for A arms and guarantees: P(the best arm is dropped, or the race stops
declaring the arms still standing within the margin of each other while one of them is the margin or
more below the best) ≤ α, whichever arm happens to lead; it does not bound how often a non-best arm is
dropped by another that is not better than it. The simulation below checks all of this at the sizes
used, with the seed noise of a real study."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri")
    parser.add_argument("--study")
    parser.add_argument("--metric", default="test_macro_f1")
    parser.add_argument("--sd", type=float, help="paired-difference SD to use instead of a real study's")
    parser.add_argument("--studies", type=int, default=2000, help="simulated studies per scenario")
    parser.add_argument("--margin", type=float, default=2.0, help="margin in paired-difference SDs")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--quick", action="store_true", help="fewer configurations and checks (a smoke run)")
    parser.add_argument("--quantised-studies", type=int, default=10_000,
                        help="studies per quantised scenario (at least --studies): FWER <= alpha to +-0.004")
    parser.add_argument("--only", help="run only these sections (comma-separated: quantised, skewed) and merge "
                        "them into the published results/race.{json,md}, keeping the rest of the full run's")
    args = parser.parse_args()
    began = time.time()
    rng = np.random.default_rng(args.seed)
    S, m = args.studies, args.margin
    if args.only:
        which = [w.strip() for w in args.only.split(",") if w.strip()]
        if not which or set(which) - set(NEW_SECTIONS):
            raise SystemExit(f"--only takes {', '.join(NEW_SECTIONS)}, not {args.only!r}")
        merge(which, args, S, m, rng, began)
        return

    if args.sd:
        noise = Noise(args.sd, f"--sd {args.sd} (Gaussian)")
    else:
        if not (args.tracking_uri and args.study):
            folder = Path(tempfile.mkdtemp(prefix="race_noise_"))
            args.tracking_uri, args.study = run_real_study(folder), "race_noise"
        noise = read_noise(args.tracking_uri, args.study, args.metric)
    unit = noise.sd
    result: dict = {"alpha": ALPHA, "start": START, "studies_per_scenario": S, "margin_sd": m,
                    "margin_metric": m * unit, "noise": {"sd": unit, "source": noise.source, **noise.detail}}
    lines = ["# Racing seeds: error, power and cost by simulation", "",
             f"`.venv/bin/python benchmarks/race.py{' --quick' if args.quick else ''}` — {S:,} simulated "
             f"studies per scenario, α = {ALPHA}, start = {START} seeds.", "",
             f"**Seed noise**: {noise.source}. SD of the paired difference (arm − baseline) over seeds: "
             f"**{unit:.4f}**; effects and margins below are in units of it (all the procedures are "
             f"scale-free). Margin for the scenarios: **{m:g} SD = {m * unit:.4f}**."]
    if noise.detail:
        d = noise.detail
        lines += ["", f"Per arm, that SD ranges {min(d['per_arm_paired_sd'].values()):.4f}–"
                  f"{max(d['per_arm_paired_sd'].values()):.4f}; the arms' mean differences are "
                  + ", ".join(f"{v:+.2f}" for v in d["mean_differences_in_sd"].values())
                  + f" SD; residual skew {d['residual_skew']:.2f}, excess kurtosis "
                  f"{d['residual_excess_kurtosis']:.2f} (the non-Gaussian check below resamples them)."]
    lines += ["", "Scenarios: (a) every arm equal to the baseline; (b) 2 arms (K = 5) or 4 arms (K = 15) "
              "better or worse by 0.5, 1, 1.5 or 2 SD (drawn per study), the rest equal; (c) every arm's "
              "true difference uniform in ±margin/2. Fixed design: every arm max seeds, paired t-test with "
              "Holm plus TOST with Holm, at max. Trials used count the baseline's too (it runs every seed an "
              "undecided arm runs).", "", "## The guarantee", "", GUARANTEE]

    # The sections in the order they are published. They all draw from `rng` in turn, so this order fixes
    # every figure after it: the same --seed gives the same results only in this order.
    lines += boundary_section(rng, args.quick, result)
    lines += candidates_section(S, m, rng, args.quick, result)
    lines += test_alone_section(S, rng, args.quick, result)
    configs = CONFIGS if not args.quick else ((5, 8), (15, 20))
    more, checked = chosen_section(configs, S, m, rng, args.quick, result)
    lines += more
    lines += margins_section(S, rng, args.quick, result)
    lines += half_widths_section(result)
    lines += async_section(m, rng, args.quick, result)
    lines += best_section(S, m, rng, args.quick, result)
    more, got = non_gaussian_section(noise, S, m, rng, args.quick, result)
    lines += more
    checked += got

    # 6b. real metrics: quantised scores, skewed differences -------------------------------------------
    more, got = new_sections(NEW_SECTIONS, S, m, unit, rng, args.quick, result, quantised_studies(args))
    lines += more
    checked += got

    # 7. the targets ----------------------------------------------------------------------------------
    targets = []
    lines += ["", "## The targets", ""]
    worst = max((r["race"]["fwer"], r["K"], r["max"]) for r in result["main"] if r["scenario"] == "a")
    alone = max((r["a"]["race"]["fwer"], r["K"], r["max"]) for r in result["test_alone"])
    ok = all(f - mc(f, S) <= ALPHA for f, _, _ in (worst, alone))
    targets.append({"target": "FWER <= alpha in (a)", "met": ok, "worst_margin": worst[0], "worst_margin_0": alone[0]})
    lines.append(f"- **FWER ≤ α in (a): {'met' if ok else 'NOT met'}.** Highest race FWER: {worst[0]:.3f} at margin "
                 f"{m:g} SD (K = {worst[1]}, max {worst[2]}); {alone[0]:.3f} with no margin (K = {alone[1]}, max "
                 f"{alone[2]}), against {max(r['a']['naive']['fwer'] for r in result['test_alone']):.3f} for the "
                 "naive race.")
    for K, N in configs:
        rows = {r["scenario"]: r for r in result["main"] if (r["K"], r["max"]) == (K, N)}
        shares = {x: rows[x]["race"]["trials_share"] for x in "bc"}
        met = all(v <= 0.5 for v in shares.values())
        need = [row["margin_sd"] for row in result["margins"] if (row["K"], row["max"]) == (K, N)
                and row["b"]["trials_share"] <= 0.5 and row["c"]["trials_share"] <= 0.5]
        b = rows["b"]
        beyond = [e for e in EFFECTS if e >= m]
        inside = [e for e in EFFECTS if e < m]
        loss = {e: b["fixed"]["power"][str(e)] - b["race"]["power"][str(e)] for e in EFFECTS}
        alone_row = next(r for r in result["test_alone"] if (r["K"], r["max"]) == (K, N)) \
            if any((r["K"], r["max"]) == (K, N) for r in result["test_alone"]) else None
        loss0 = ({e: alone_row["b"]["fixed"]["power"][str(e)] - alone_row["b"]["race"]["power"][str(e)] for e in EFFECTS}
                 if alone_row else {})
        power_ok = all(loss[e] <= 0.05 for e in beyond)
        targets.append({"K": K, "max": N, "trials_b": shares["b"], "trials_c": shares["c"], "trials_met": met,
                        "margins_meeting_trials": need, "power_loss_margin": loss, "power_loss_test_alone": loss0,
                        "power_met_beyond_margin": power_ok})
        text = (f"- K = {K}, max {N}: trials used {pct(shares['b'])} (b), {pct(shares['c'])} (c): "
                f"**{'met' if met else 'NOT met'}**")
        if not met:
            text += (f" (the sweep meets ≤ 50% from margin {min(need):g} SD)" if need else
                     " (no margin in the sweep reaches 50%)")
        text += ("; power lost against the fixed design at |effect| "
                 + ", ".join(f"{e:g}: {100 * loss[e]:+.0f}" for e in EFFECTS) + " points")
        if beyond:
            text += f" — **{'met' if power_ok else 'NOT met'}** for effects at or beyond the margin"
        if inside:
            text += (f"; effects inside the margin ({', '.join(f'{e:g}' for e in inside)} SD) are mostly answered "
                     "'equivalent', which the margin makes a correct answer")
        if loss0:
            text += ("; with no margin (the test alone) the loss is "
                     + ", ".join(f"{100 * loss0[e]:+.0f}" for e in EFFECTS) + " points")
        lines.append(text + ".")
    wrong = max(r["race"]["wrong_direction"] for r in result["main"])
    lines.append(f"- Directional errors (an arm with a true effect declared better or worse the wrong way round): "
                 f"at most {wrong:.4f} of studies in any row above.")
    result["targets"] = targets
    result["cross_checked_studies"] = checked

    result["seconds"] = time.time() - began
    lines += ["", f"({result['seconds']:.0f} s)"]
    publish("race", result, lines)


if __name__ == "__main__":
    main()
