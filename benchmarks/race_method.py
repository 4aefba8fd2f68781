"""The sections of a full benchmarks/race.py run on the method itself, in the order it runs them: are the
boundaries exact (`boundary_section`), choosing the method among `race_vectorised.CANDIDATES`
(`candidates_section`), the test alone against the naive race (`test_alone_section`), the chosen method at
every configuration (`chosen_section`), trials used against the margin (`margins_section`), why short races
cannot save half (`half_widths_section`), asynchronous arrival (`async_section`), mode "best" (`best_section`)
and non-Gaussian noise (`non_gaussian_section`). Each stores its figures in `result` and returns its lines of
the report. They all draw from one generator in turn, so running them in another order would change every
figure after it."""

from __future__ import annotations

import math

import numpy as np
from race_library import async_study, cross_check, library_best  # benchmarks/, the script's own folder
from race_measures import fmt, mc, measure, measure_best, pct
from race_simulate import ALPHA, CONFIGS, EFFECTS, MARGINS, START, Noise, scenario, simulate
from race_vectorised import (BETTER_, CANDIDATES, WORSE_, best_race, exact_bounds, fixed, look_stats, naive,
                             normal_bounds, race, ranks, run_race)
from scipy import stats

from ablation.stats import boundaries, racing


def boundary_section(rng: np.random.Generator, quick: bool, result: dict):
    """Are the boundaries exact? Monte Carlo crossing probabilities of null t paths, exact-t and normal-theory
    boundaries."""
    lines: list[str] = []
    checks = []
    draws = 400_000 if quick else 2_000_000
    for start, N, level, kind in ((3, 8, 0.005, "power8"), (3, 20, 0.025 / 15, "power8"), (3, 8, 0.005, "obf"),
                                  (3, 20, 0.025 / 15, "obf"), (3, 20, 0.05 / 15, "pocock"), (3, 12, 0.01, "pocock")):
        c = boundaries.boundary(start, N, level, kind)
        z = normal_bounds(kind)(start, N, [level])[0]
        hits = hits_z = 0
        for _ in range(draws // 200_000):
            x = rng.standard_normal((200_000, N))
            mean, se = look_stats(x, start)
            t = mean / se
            hits += int((t >= c).any(1).sum())
            hits_z += int((t >= z).any(1).sum())
        checks.append({"start": start, "max": N, "level": level, "spending": kind, "draws": draws,
                       "exact": hits / draws, "normal_approximation": hits_z / draws})
    result["boundary_check"] = checks
    lines += ["", "## Are the boundaries exact?", "",
              f"Probability that a null t path crosses a one-sided boundary, by {draws:,} Monte Carlo paths "
              "(± 95% MC):", "", "| start–max | spending | level | exact-t boundary | normal-theory boundary |",
              "|---|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c['start']}–{c['max']} | {c['spending']} | {c['level']:.5f} | "
                     f"{c['exact']:.5f} ± {mc(c['exact'], draws):.5f} | {c['normal_approximation']:.5f} "
                     f"({c['normal_approximation'] / c['level']:.2f}×) |")
    return lines


def candidates_section(S: int, m: float, rng: np.random.Generator, quick: bool, result: dict):
    """Choosing the method: every candidate in `race_vectorised.CANDIDATES` on the same simulated studies,
    and the fixed design."""
    lines: list[str] = []
    cand_configs = ((5, 12), (15, 20)) if not quick else ((5, 12),)
    result["candidates"] = []
    lines += ["", "## Choosing the method", "",
              "Every candidate on the same simulated studies. The test alone (margin 0, so no arm stops as "
              "equivalent and every equal arm faces every look): family-wise error in (a) and power in (b), "
              "the share of arms with that true |effect| declared better or worse in the right direction. "
              f"Then the trials used at margin {m:g} SD, where the savings come from.", "",
              "| K | max | method | FWER (a), margin 0 | power 0.5 / 1 / 1.5 / 2, margin 0 | "
              f"trials (a) / (b) / (c), margin {m:g} |", "|---|---|---|---|---|---|"]
    for K, N in cand_configs:
        data = {}
        for name in "abc":
            for margin in (0.0, m):
                deltas = scenario(name, S, K, margin if name == "c" else m, rng)
                X = simulate(S, deltas, N, rng)
                data[name, margin] = (deltas, X[:, 1:] - X[:, :1])
        for label, (tb, eb) in CANDIDATES.items():
            got = {}
            for (name, margin), (deltas, D) in data.items():
                if margin == 0.0 and name == "c":
                    continue
                st, used = race(D, START, margin, ALPHA, tb, eb)
                got[f"{name}{'' if margin else '_test_alone'}"] = measure(st, used, deltas, margin, N)
            result["candidates"].append({"K": K, "max": N, "method": label, **got})
            pw = got["b_test_alone"]["power"]
            lines.append(f"| {K} | {N} | {label} | {fmt(got['a_test_alone']['fwer'], S)} | "
                         + " / ".join(f"{pw[str(e)]:.2f}" for e in EFFECTS) + " | "
                         + " / ".join(pct(got[x]['trials_share']) for x in "abc") + " |")
        fa = measure(fixed(data["a", 0.0][1], 0.0, ALPHA), np.full((S, K), N), data["a", 0.0][0], 0.0, N)
        fb = measure(fixed(data["b", 0.0][1], 0.0, ALPHA), np.full((S, K), N), data["b", 0.0][0], 0.0, N)
        result["candidates"].append({"K": K, "max": N, "method": "fixed design", "a_test_alone": fa,
                                     "b_test_alone": fb})
        lines.append(f"| {K} | {N} | fixed design (max seeds, Holm) | {fmt(fa['fwer'], S)} | "
                     + " / ".join(f"{fb['power'][str(e)]:.2f}" for e in EFFECTS) + " | 100% / 100% / 100% |")
    return lines


def test_alone_section(S: int, rng: np.random.Generator, quick: bool, result: dict):
    """The test alone, every configuration: what the correction buys against the naive race."""
    lines: list[str] = []
    result["test_alone"] = []
    lines += ["", "## The test alone: what the correction buys", "",
              "Margin 0 (no equivalence stop): scenario (a) family-wise error of the race, of the naive race "
              "(a t-test after every seed, stop at p < 0.05, per arm; and with Holm across arms at each look) "
              "and of the fixed design; scenario (b) power per |effect| 0.5 / 1 / 1.5 / 2 SD, race (fixed).", "",
              "| K | max | FWER race | FWER naive, per arm | FWER naive, Holm per look | FWER fixed | "
              "power race (fixed) | seeds per arm (b) |", "|---|---|---|---|---|---|---|---|"]
    for K, N in (CONFIGS if not quick else ((5, 8), (15, 20))):
        row = {"K": K, "max": N}
        for name in "ab":
            deltas = scenario(name, S, K, 0.0, rng)
            X = simulate(S, deltas, N, rng)
            D = X[:, 1:] - X[:, :1]
            row[name] = {"race": measure(*race(D, START, 0.0, ALPHA), deltas, 0.0, N),
                         "naive": measure(*naive(D, START, 0.0, ALPHA), deltas, 0.0, N),
                         "naive_holm": measure(*naive(D, START, 0.0, ALPHA, holm=True), deltas, 0.0, N),
                         "fixed": measure(fixed(D, 0.0, ALPHA), np.full((S, K), N), deltas, 0.0, N)}
        result["test_alone"].append(row)
        a, b = row["a"], row["b"]
        lines.append(f"| {K} | {N} | {fmt(a['race']['fwer'], S)} | {fmt(a['naive']['fwer'], S)} | "
                     f"{fmt(a['naive_holm']['fwer'], S)} | {fmt(a['fixed']['fwer'], S)} | "
                     + " / ".join(f"{b['race']['power'][str(e)]:.2f} ({b['fixed']['power'][str(e)]:.2f})"
                                  for e in EFFECTS)
                     + f" | {b['race']['seeds_per_arm']:.1f} of {N} |")
    return lines


def chosen_section(configs, S: int, m: float, rng: np.random.Generator, quick: bool, result: dict):
    """The chosen method at every configuration in `configs`, cross-checked against the library. Returns
    (lines, studies cross-checked)."""
    lines: list[str] = []
    result["main"] = []
    lines += ["", f"## The chosen method, margin {m:g} SD", "",
              "FWER: share of studies in which some arm equal to the baseline was declared better or worse "
              "(± 95% MC). Power and correct (b): per true |effect| 0.5 / 1 / 1.5 / 2 SD, race (fixed design); "
              "'correct' also counts 'equivalent' for effects inside the margin. Trials: race trials / fixed "
              "design trials. Agree: share of arms with the same decision as the fixed design; in brackets, the share "
              "with the opposite direction. (A race 'equivalent' where the fixed design says 'better' is no "
              "contradiction when the effect is inside the margin: it stopped on a different true statement.)", "",
              "| K | max | scenario | FWER race | FWER naive (per arm / Holm per look) | FWER fixed | false equiv. | "
              "power race (fixed) | correct race (fixed) | trials used | agree (opposite) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    checked = 0
    for K, N in configs:
        for name in "abc":
            deltas = scenario(name, S, K, m, rng)
            X = simulate(S, deltas, N, rng)
            D = X[:, 1:] - X[:, :1]
            st, used = race(D, START, m, ALPHA)
            fx = fixed(D, m, ALPHA)
            nv, nused = naive(D, START, m, ALPHA)
            nh, hused = naive(D, START, m, ALPHA, holm=True)
            r = measure(st, used, deltas, m, N, fx)
            f = measure(fx, np.full((S, K), N), deltas, m, N)
            n1 = measure(nv, nused, deltas, m, N)
            n2 = measure(nh, hused, deltas, m, N)
            checked += cross_check(X, deltas, N, m, ALPHA, 3 if quick else (10 if K <= 6 else 4))
            result["main"].append({"K": K, "max": N, "scenario": name, "race": r, "fixed": f, "naive": n1,
                                   "naive_holm": n2})
            power = correct = "-"
            if "power" in r:
                power = " / ".join(f"{r['power'][str(e)]:.2f} ({f['power'][str(e)]:.2f})" for e in EFFECTS)
                correct = " / ".join(f"{r['correct'][str(e)]:.2f} ({f['correct'][str(e)]:.2f})" for e in EFFECTS)
            lines.append(f"| {K} | {N} | ({name}) | {fmt(r['fwer'], S)} | {fmt(n1['fwer'])} / {fmt(n2['fwer'])} | "
                         f"{fmt(f['fwer'])} | {fmt(r['false_equivalence'])} | {power} | {correct} | "
                         f"{pct(r['trials_share'])} | {pct(r['agreement'])} ({r['conflict']:.3f}) |")
    result["cross_checked_studies"] = checked
    lines += ["", f"The vectorised simulator matched `racing.decide`, `naive_decide` and `fixed_decide` decision "
              f"for decision (state and seeds) on {checked} of these studies (all three procedures, every arm)."]
    return lines, checked


def margins_section(S: int, rng: np.random.Generator, quick: bool, result: dict):
    """Trials used against the margin: the sweep over `race_simulate.MARGINS`, on half as many studies."""
    lines: list[str] = []
    result["margins"] = []
    sweep = CONFIGS if not quick else ((15, 20),)
    lines += ["", "## Trials used against the margin", "",
              "Share of the fixed design's trials the race uses, and its power for effects of 1 and 2 SD in "
              "(b), race (fixed), by margin in SD units:", "",
              "| K | max | margin (SD) | trials (a) | trials (b) | trials (c) | power 1 SD | power 2 SD | FWER (a) |",
              "|---|---|---|---|---|---|---|---|---|"]
    sweep_S = S // 2
    for K, N in sweep:
        for margin in MARGINS:
            row = {"K": K, "max": N, "margin_sd": margin}
            for name in "abc":
                deltas = scenario(name, sweep_S, K, margin, rng)
                X = simulate(sweep_S, deltas, N, rng)
                D = X[:, 1:] - X[:, :1]
                st, used = race(D, START, margin, ALPHA)
                row[name] = measure(st, used, deltas, margin, N)
                if name == "b":
                    row["fixed_b"] = measure(fixed(D, margin, ALPHA), np.full((sweep_S, K), N), deltas, margin, N)
            result["margins"].append(row)
            b, fb = row["b"], row["fixed_b"]
            lines.append(f"| {K} | {N} | {margin:g} | {pct(row['a']['trials_share'])} | {pct(b['trials_share'])} | "
                         f"{pct(row['c']['trials_share'])} | {b['power']['1.0']:.2f} ({fb['power']['1.0']:.2f}) | "
                         f"{b['power']['2.0']:.2f} ({fb['power']['2.0']:.2f}) | {fmt(row['a']['fwer'], sweep_S)} |")
    return lines


def half_widths_section(result: dict):
    """Why a short race cannot save half: the narrowest valid interval at n seeds (no simulation)."""
    lines: list[str] = []
    widths = {}
    lines += ["", "## Why short races cannot save half", "",
              "An equal arm stops as equivalent at n seeds only once its interval, mean ± h, lies inside "
              "±margin. The table gives h/s at n seeds (s: the sample SD of the differences, about 1 in these "
              "units): first for a single fixed-sample TOST look at n seeds (α/K one-sided; no allowance for "
              "other looks: no valid procedure does better), then for the race's repeated interval at "
              "Holm's first level (Pocock-type spending over looks 3..max).", "",
              "| K | interval | n = 3 | 4 | 5 | 6 | 8 | 10 | 12 | 16 | 20 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for K in (5, 15):
        single = {n: float(stats.t.isf(ALPHA / K, n - 1) / math.sqrt(n)) for n in (3, 4, 5, 6, 8, 10, 12, 16, 20)}
        widths[f"K={K} single look"] = single
        lines.append(f"| {K} | one look at n | " + " | ".join(f"{v:.2f}" for v in single.values()) + " |")
        for N in (8, 12, 20):
            c = boundaries.boundary(START, N, ALPHA / K, racing.EQUIVALENCE_SPENDING)
            row = {n: float(c[n - START] / math.sqrt(n)) for n in (3, 4, 5, 6, 8, 10, 12, 16, 20) if n <= N}
            widths[f"K={K} race max {N}"] = row
            lines.append(f"| {K} | race, max {N} | " + " | ".join(f"{row[n]:.2f}" if n in row else "" for n in
                                                               (3, 4, 5, 6, 8, 10, 12, 16, 20)) + " |")
    result["half_widths"] = widths
    one, r12, r20 = widths["K=5 single look"], widths["K=5 race max 12"], widths["K=5 race max 20"]
    lines += ["", "Using at most half the fixed design's trials means the equal arms must stop by about n = max/2: "
              f"n = 4 for max 8, where even a single look needs a margin above {one[4]:.1f} s (K = 5) plus the "
              f"noise of the mean, and n = 6 for max 12 ({one[6]:.1f} s for one look, {r12[6]:.1f} s for the "
              "race's interval). A margin that wide also calls effects smaller than it 'equivalent', which is the "
              "power the race gives up in (b) for effects inside the margin. With max 20 the equal arms can stop "
              f"near n = 8-10 ({r20[8]:.1f}-{r20[10]:.1f} s), where a 2 SD margin suffices."]
    return lines


def async_section(m: float, rng: np.random.Generator, quick: bool, result: dict):
    """Asynchronous arrival: `race_library.async_study` at several worker counts, against the synchronous race."""
    lines: list[str] = []
    result["async"] = []
    A_S = 300 if quick else 1000
    A_S15 = 300 if quick else 400
    lines += ["", "## Asynchronous arrival", "",
              f"{A_S} studies per row ({A_S15} with K = 15): trials finish in random order (lognormal durations, per-arm speeds); a "
              "freed slot takes the next useful trial at once and decisions are recomputed from the finished "
              "trials after every result. Trials used count every trial started, including seeds already "
              "running when their arm was decided.", "",
              "| K | max | scenario | workers | seeds in flight per arm | FWER | trials used | wall clock (trial durations) | "
              "same decisions as the synchronous race |",
              "|---|---|---|---|---|---|---|---|---|"]
    for K, N in ((5, 20), (15, 20)) if not quick else ((5, 20),):
        for name in "ab":
            n_studies = A_S if K <= 6 else A_S15
            deltas = scenario(name, n_studies, K, m, rng)
            X = simulate(n_studies, deltas, N, rng)
            D = X[:, 1:] - X[:, :1]
            tr, uf, er = ranks(D, START, m, ALPHA, exact_bounds(racing.TEST_SPENDING),
                               exact_bounds(racing.EQUIVALENCE_SPENDING))
            sync, _ = run_race(tr, uf, er)
            for workers, cap in ((2, None), (8, None), (32, None), (8, 1), (32, 1)):
                states, totals, clock = [], [], []
                for s in range(n_studies):
                    st, total, took = async_study(X[s], tr[s], uf[s], er[s], START, N, workers, rng, cap)
                    states.append(st)
                    totals.append(total)
                    clock.append(took)
                states = np.array(states)
                null = deltas == 0
                fwer = float((((states == BETTER_) | (states == WORSE_)) & null).any(1).mean()) if null.any() else None
                share = float(np.mean(totals) / ((K + 1) * N))
                same = float((states == sync).all(1).mean())
                result["async"].append({"K": K, "max": N, "scenario": name, "workers": workers, "cap": cap,
                                        "studies": n_studies, "fwer": fwer, "trials_share": share,
                                        "same_as_sync": same, "wall_clock": float(np.mean(clock))})
                lines.append(f"| {K} | {N} | ({name}) | {workers} | {cap or '-'} | {fmt(fwer, n_studies)} | {pct(share)} | "
                             f"{np.mean(clock):.1f} | {pct(same)} |")

    capped = {(r["K"], r["scenario"], r["workers"], r["cap"]): r for r in result["async"]}
    if (5, "a", 32, None) in capped and (5, "a", 32, 1) in capped:
        free, one = capped[5, "a", 32, None], capped[5, "a", 32, 1]
        lines += ["", f"Decisions do not depend on the order of arrival (the prefix rule), but trials do: with "
                  f"many workers and no limit, slots start seeds that an arm turns out not to need (K = 5, 32 "
                  f"workers: {pct(free['trials_share'])} of the fixed design's trials against "
                  f"{pct(capped[5, 'a', 2, None]['trials_share'])} with 2 workers). At most one seed in flight "
                  f"per racing arm keeps {pct(one['trials_share'])} for "
                  f"{one['wall_clock'] / free['wall_clock']:.1f}× the wall clock."]
    return lines


def best_section(S: int, m: float, rng: np.random.Generator, quick: bool, result: dict):
    """Mode "best": `race_vectorised.best_race`, cross-checked against `race_library.library_best`, scored
    by `race_measures.measure_best`."""
    lines: list[str] = []
    result["best"] = []
    lines += ["", "## Mode \"best\"", "",
              "Error: the (first) best arm was dropped, or the race stopped declaring the standing arms tied "
              "within the margin while one was a margin or more below the best; the guarantee is ≤ α. (a) has "
              "every arm tied, so every arm is a best arm: the row also shows how often any arm was dropped.", "",
              "| K + 1 arms | max | scenario | error | best dropped | any dropped (all tied) | unique best found | "
              "arms standing at the end | trials used |", "|---|---|---|---|---|---|---|---|---|"]
    for K, N in ((5, 12), (5, 20)) if not quick else ((5, 12),):
        for name in "abc":
            deltas = scenario(name, S, K, m, rng)
            X = simulate(S, deltas, N, rng)
            st, used = best_race(X, START, m, ALPHA)
            mu = np.concatenate([np.zeros((S, 1)), deltas], axis=1)
            for s in range(3 if quick else 8):
                ref = library_best(X[s], START, m, ALPHA)
                if ref[0] != st[s].tolist() or ref[1] != used[s].tolist():
                    raise SystemExit(f"best-mode cross-check failed at study {s}: {ref} vs {st[s]} {used[s]}")
            r = measure_best(st, used, mu, m, N)
            result["best"].append({"K": K, "max": N, "scenario": name, **r})
            lines.append(f"| {K + 1} | {N} | ({name}) | {fmt(r['error'], S)} | {fmt(r['best_dropped'])} | "
                         f"{fmt(r['any_dropped_when_all_tied'])} | {fmt(r['winner_found'])} | "
                         f"{r['standing_at_end']:.1f} | {pct(r['trials_share'])} |")
    return lines


def non_gaussian_section(noise: Noise, S: int, m: float, rng: np.random.Generator, quick: bool, result: dict):
    """Non-Gaussian noise: scenario (a) resampling the real study's residuals (nothing without them). Returns
    (lines, studies cross-checked)."""
    lines: list[str] = []
    checked = 0
    if noise.residuals is not None:
        result["bootstrap"] = []
        lines += ["", "## Non-Gaussian noise", "",
                  f"Scenario (a) with per-trial noise resampled from the real study's {len(noise.residuals)} "
                  "two-way residuals instead of Gaussian draws:", "",
                  "| K | max | FWER race | FWER naive (per arm / Holm per look) | trials used |", "|---|---|---|---|---|"]
        for K, N in ((5, 8), (5, 20), (15, 20)) if not quick else ((5, 20),):
            deltas = np.zeros((S, K))
            X = simulate(S, deltas, N, rng, noise.residuals)
            D = X[:, 1:] - X[:, :1]
            st, used = race(D, START, m, ALPHA)
            r = measure(st, used, deltas, m, N)
            n1 = measure(*naive(D, START, m, ALPHA), deltas, m, N)
            n2 = measure(*naive(D, START, m, ALPHA, holm=True), deltas, m, N)
            result["bootstrap"].append({"K": K, "max": N, "race": r, "naive": n1, "naive_holm": n2})
            checked += cross_check(X, deltas, N, m, ALPHA, 2 if quick else 4)
            lines.append(f"| {K} | {N} | {fmt(r['fwer'], S)} | {fmt(n1['fwer'])} / {fmt(n2['fwer'])} | "
                         f"{pct(r['trials_share'])} |")
    return lines, checked
