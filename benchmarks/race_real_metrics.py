"""The real-metric sections of benchmarks/race.py: scores quantised as accuracy on IMAGES images
(`quantised_section`) and strongly skewed paired differences (`skewed_section`, with what
`ablation.stats.paired_checks` flags on the decisions). A full run ends with them (`new_sections`); `--only` runs
them alone and merges them into the published results (`merge`), with `still_stands` checking the full run's
chosen-method rows against a fresh simulation, since those were not rerun."""

from __future__ import annotations

import json
import math
import time

import numpy as np
from race_library import cross_check  # benchmarks/, the script's own folder
from race_measures import fmt, mc, measure, pct
from race_simulate import (ALPHA, IMAGES, QUANTISED, SKEWED, START, quantised_sd, scenario, simulate,
                           simulate_quantised, simulate_skewed)
from race_vectorised import BETTER_, UNDECIDED_, WORSE_, fixed, look_stats, metric_scale, race
from results_file import publish
from scipy import stats
from scipy.optimize import brentq

from ablation.stats import paired_checks


# ---------------------------------------------------------------------------------------------------
# Real metrics: quantised scores, skewed differences (also runnable alone: --only, merged into the results)

NEW_CONFIGS = ((5, 8), (5, 20), (15, 20))


def quantised_section(S: int, m: float, unit: float, rng: np.random.Generator, quick: bool):
    """Accuracy on IMAGES images (`race_simulate.simulate_quantised`): family-wise error under the null and false
    equivalence with every arm at the margin, race and fixed design, the guard given the metric's scale;
    the library cross-checked on studies with zero-spread looks. Returns (result rows, lines, checked)."""
    rows, checked, flat_checked = [], 0, 0
    lines = ["", "## Quantised metrics: accuracy on 200 images", "",
             "Every score is a multiple of 1/200, so paired differences tie and the first seeds' can be all "
             "equal: the case `racing` treats as no spread (se = nan: no rule fires on that look), the guard "
             "given the metric's own scale as `paths.pair_path` does. Each seed gives the baseline "
             "Binomial(200, p) images right, p = level + 0.02·z per seed (shared by every arm on that seed); "
             "each arm is a different network on the same 200 images, which gets Binomial right of the images "
             "the baseline missed and misses Binomial of those it got right, `discord` images each way on "
             "average (`simulate_quantised`; its mean difference is exactly 0, or exactly the effect). Weak "
             f"models (level 0.5) with the discord that gives the seed noise above ({unit:.4f}, "
             f"{unit * IMAGES:.1f} images); closer networks (level 0.85, 2 images each way; level 0.9, half an "
             "image each way), whose differences are a few images or one. Margin 2 SD of each noise (so 4 and "
             "2 images for the last two). Null: every arm equal to the baseline (FWER at margin 0, the test "
             "alone, and at margin 2 SD). At the margin: every arm's true difference ±margin (false "
             "equivalence: some arm called equivalent). ± 95% MC on the race's figures.", "",
             "| differences (paired SD) | K | max | arms with no spread at look 3 | FWER race (fixed), margin 0 | "
             "FWER race (fixed), margin 2 SD | false equiv. at the margin, race (fixed) | "
             "trials used, null / at margin |",
             "|---|---|---|---|---|---|---|---|"]
    configs = NEW_CONFIGS if not quick else ((5, 8),)
    for label, level, discord in QUANTISED:
        if discord is None:
            discord = brentq(lambda d: quantised_sd(level, d) - unit, 1e-3, IMAGES * min(level, 1 - level))
        sd = quantised_sd(level, discord)
        margin = m * sd
        for K, N in configs:
            row = {"noise": label, "level": level, "discord_images": discord, "paired_sd": sd,
                   "paired_sd_images": sd * IMAGES, "margin": margin, "K": K, "max": N}
            for name, effect, mg in (("null_margin0", 0.0, 0.0), ("null", 0.0, margin), ("at_margin", margin, margin)):
                deltas = effect * rng.choice([-1.0, 1.0], size=(S, K))
                X = simulate_quantised(S, deltas, N, rng, level, discord)
                D, scale = X[:, 1:] - X[:, :1], metric_scale(X)
                st, used = race(D, START, mg, ALPHA, scale=scale)
                fx = fixed(D, mg, ALPHA, scale)
                _, se = look_stats(D, START, scale)
                row[name] = {"race": measure(st, used, deltas, mg, N),
                             "fixed": measure(fx, np.full((S, K), N), deltas, mg, N),
                             "no_spread_at_start": float(np.isnan(se[..., 0]).mean()),
                             "no_spread_any_look": float(np.isnan(se).any(-1).mean())}
                if effect:  # the differences' skewness, signed so that the effect is positive
                    row[name]["skewness"] = float(stats.skew((D * np.sign(deltas)[:, :, None]).ravel()))
                flat = np.nonzero(np.isnan(se).any(axis=(1, 2)))[0]  # studies with a zero-spread look
                count = 1 if quick else (3 if K <= 6 else 2)
                got = cross_check(X, deltas, N, mg, ALPHA, count, flat if len(flat) else None)
                checked += got
                flat_checked += got if len(flat) else 0
            rows.append(row)
            z, n, a = row["null_margin0"], row["null"], row["at_margin"]
            lines.append(f"| {label} ({sd:.4f}, {sd * IMAGES:.1f} images) | {K} | {N} | "
                         f"{pct(z['no_spread_at_start'])} | {fmt(z['race']['fwer'], S)} ({fmt(z['fixed']['fwer'])}) | "
                         f"{fmt(n['race']['fwer'], S)} ({fmt(n['fixed']['fwer'])}) | "
                         f"{fmt(a['race']['false_equivalence'], S)} ({fmt(a['fixed']['false_equivalence'])}) | "
                         f"{pct(n['race']['trials_share'])} / {pct(a['race']['trials_share'])} |")
    worst = max((r[k]["race"]["fwer"], r["noise"], r["K"], r["max"]) for r in rows for k in ("null_margin0", "null"))
    worst_eq = max((r["at_margin"]["race"]["false_equivalence"], r["noise"], r["K"], r["max"]) for r in rows)
    fixed_eq = max(r["at_margin"]["fixed"]["false_equivalence"] for r in rows)
    skew = {r["noise"]: r["at_margin"]["skewness"] for r in rows}
    lines += ["", f"Highest race FWER {worst[0]:.3f} ({worst[1]}, K = {worst[2]}, max {worst[3]}), highest false "
              f"equivalence {worst_eq[0]:.3f} ({worst_eq[1]}, K = {worst_eq[2]}, max {worst_eq[3]}), against α = "
              f"{ALPHA} (± {mc(ALPHA, S):.3f} at {S:,} studies). A look without spread decides nothing, so ties "
              "cannot make a claim or an equivalence; what remains is the t statistic on lattice differences. At "
              "the margin they lean to the side of the effect (skewness "
              + ", ".join(f"{v:.2f} for {k}" for k, v in skew.items())
              + "; Poisson-like when the SD is an image or two), where a t-based equivalence interval is least "
              f"exact: the fixed design's false equivalence reaches {fixed_eq:.3f} there too. The vectorised "
              f"simulator matched `racing.decide`, `naive_decide` and `fixed_decide` decision for decision on "
              f"{checked} of these studies, {flat_checked} of them chosen among studies with a zero-spread look."]
    return rows, lines, checked


def claim_checks(D: np.ndarray, used: np.ndarray, arms: np.ndarray, permutations: int = 0):
    """`paired_checks` on the differences each of the given arms (rows of (study, arm)) was decided on:
    per arm, flagged (skewness or outlier beyond its threshold at its seeds), and the permutation p-values
    of the first `permutations` of them."""
    flagged = np.zeros(len(arms), dtype=bool)
    ns = used[arms[:, 0], arms[:, 1]] if len(arms) else np.zeros(0, dtype=int)
    for n in np.unique(ns):
        pick = np.nonzero(ns == n)[0]
        skew, _, z = paired_checks.scores(D[arms[pick, 0], arms[pick, 1], :n])
        skewed, outlying = paired_checks.flags(int(n), skew, z)
        flagged[pick] = skewed | outlying
    p = np.array([paired_checks.permutation_p(D[s, k, :used[s, k]]) for s, k in arms[:permutations]])
    return flagged, p


def skewed_section(S: int, m: float, rng: np.random.Generator, quick: bool):
    """Strongly skewed paired differences (`race_simulate.simulate_skewed`) against Gaussian ones: the race's and the
    fixed design's FWER, and what `paired_checks` flags. Returns (result rows, lines)."""
    perms = 100 if quick else 300
    lines = ["", "## Skewed paired differences", "",
             "The guarantee assumes Gaussian paired differences. Two strongly skewed kinds, every arm's true mean "
             "difference 0: " + "; ".join(f"**{k}**: {v}" for k, v in SKEWED.items()) + ". The Gaussian rows are "
             "scenario (a) again, on the same footing. Margin 0 is the test alone (every equal arm faces every "
             "look); at 2 SD equal arms mostly stop as equivalent first. Then `ablation.stats.paired_checks` on the "
             "differences each arm was decided on (`check`: skewness beyond 2 of its standard errors, or an "
             "outlier seed by the leave-one-out t at Bonferroni 0.05; see benchmarks/results/paired_checks.md): "
             "*false claims flagged*, among the null studies with a false claim (race, margin 0), the share in "
             "which a falsely claimed arm is flagged; *permutation p ≤ α*, the share of false claims whose "
             f"sign-flip permutation p-value (the second opinion) is ≤ {ALPHA} too (first {perms} claims per row); "
             "*decided arms flagged*: the share of all arms decided (better, worse or equivalent) at margin "
             "2 SD that are flagged, for the Gaussian rows the false-alarm rate.", "",
             "| differences | K | max | FWER race (fixed), margin 0 | FWER race (fixed), margin 2 SD | "
             "false claims flagged | false claims with permutation p ≤ α | decided arms flagged, margin 2 SD |",
             "|---|---|---|---|---|---|---|---|"]
    rows, checked = [], 0
    for K, N in (NEW_CONFIGS if not quick else ((5, 8),)):
        for kind in ("gaussian", *SKEWED):
            row = {"differences": kind, "K": K, "max": N}
            for margin in (0.0, m):
                deltas = np.zeros((S, K))
                X = simulate(S, deltas, N, rng) if kind == "gaussian" else simulate_skewed(kind, S, K, N, rng)
                D, scale = X[:, 1:] - X[:, :1], metric_scale(X)
                st, used = race(D, START, margin, ALPHA, scale=scale)
                fx = fixed(D, margin, ALPHA, scale)
                out = {"race": measure(st, used, deltas, margin, N),
                       "fixed": measure(fx, np.full((S, K), N), deltas, margin, N)}
                claims = np.argwhere((st == BETTER_) | (st == WORSE_))
                decided = np.argwhere(st != UNDECIDED_)
                if margin == 0.0:
                    flagged, p = claim_checks(D, used, claims, perms)
                    studies = np.unique(claims[:, 0])
                    hit = np.unique(claims[flagged, 0])
                    out["false_claims"] = int(len(claims))
                    out["studies_with_false_claim"] = int(len(studies))
                    out["false_claim_studies_flagged"] = float(len(hit) / len(studies)) if len(studies) else None
                    out["false_claims_flagged"] = float(flagged.mean()) if len(claims) else None
                    out["false_claims_permutation_p_at_most_alpha"] = float((p <= ALPHA).mean()) if len(p) else None
                    out["permutation_checked"] = int(len(p))
                    out["seeds_at_false_claim"] = (float(used[claims[:, 0], claims[:, 1]].mean()) if len(claims)
                                                   else None)
                else:
                    flagged, _ = claim_checks(D, used, decided)
                    out["decided_arms"] = int(len(decided))
                    out["decided_arms_flagged"] = float(flagged.mean()) if len(decided) else None
                row["margin0" if margin == 0.0 else "margin"] = out
                checked += cross_check(X, deltas, N, margin, ALPHA, 1 if quick else 2)
            rows.append(row)
            z, g = row["margin0"], row["margin"]
            lines.append(f"| {kind} | {K} | {N} | {fmt(z['race']['fwer'], S)} ({fmt(z['fixed']['fwer'])}) | "
                         f"{fmt(g['race']['fwer'], S)} ({fmt(g['fixed']['fwer'])}) | "
                         f"{fmt(z['false_claim_studies_flagged'])} of {z['studies_with_false_claim']} | "
                         f"{fmt(z['false_claims_permutation_p_at_most_alpha'])} | {fmt(g['decided_arms_flagged'])} |")

    def span(kind, margin, key, side="race"):
        v = [r[margin][side][key] if side else r[margin][key] for r in rows if r["differences"] == kind]
        v = [x for x in v if x is not None]
        if not v:
            return "-"
        return f"{min(v):.2f}" if f"{min(v):.2f}" == f"{max(v):.2f}" else f"{min(v):.2f}–{max(v):.2f}"
    skewed = [k for k in SKEWED]
    lines += ["", "At margin 0 the race's family-wise error under skewed differences is "
              + ", ".join(f"{span(k, 'margin0', 'fwer')} ({k}; fixed design {span(k, 'margin0', 'fwer', 'fixed')})"
                          for k in skewed)
              + f", against {span('gaussian', 'margin0', 'fwer')} with Gaussian ones: the guarantee does not hold "
              "there, for the fixed design either. The flag catches "
              + ", ".join(f"{span(k, 'margin0', 'false_claim_studies_flagged', None)} of the studies with a false "
                          f"claim ({k})" for k in skewed)
              + f", and fires on {span('gaussian', 'margin0', 'false_claim_studies_flagged', None)} of the Gaussian "
              f"studies with a (false) claim and on {span('gaussian', 'margin', 'decided_arms_flagged', None)} of "
              "the Gaussian arms decided at margin 2 SD (its false alarms). A false claim under skew rests on the "
              "seeds that happened to miss the tail: a lognormal arm called worse had no seed in its long upper "
              "tail, a collapsing arm called better had no collapse among its seeds, and those seeds look "
              "Gaussian. A check of the decided sample sees the skew only where the bulk itself is skewed and "
              "the seeds are many; it cannot see a collapse that did not happen. The sign-flip permutation "
              "p-value is ≤ α for "
              + ", ".join(f"{span(k, 'margin0', 'false_claims_permutation_p_at_most_alpha', None)} of the false "
                          f"claims ({k})" for k in skewed)
              + " (it assumes symmetry, which a skewed null breaks too; it cannot go below 2/2^n, 0.0625 at 5 "
              "seeds, 0.0156 at 7). With a margin of 2 SD the race stops equal arms as equivalent before the rare "
              "seeds matter "
              f"(FWER {span(skewed[0], 'margin', 'fwer')} and {span(skewed[1], 'margin', 'fwer')}), where the "
              f"fixed design still claims ({span(skewed[0], 'margin', 'fwer', 'fixed')}, "
              f"{span(skewed[1], 'margin', 'fwer', 'fixed')}). The vectorised simulator matched the library on "
              f"{checked} of these studies."]
    return rows, lines, checked


ADDED = ("<!-- sections added by `benchmarks/race.py --only`: start -->",
         "<!-- sections added by `benchmarks/race.py --only`: end -->")
NEW_SECTIONS = ("quantised", "skewed")


def new_sections(which, S: int, m: float, unit: float, rng: np.random.Generator, quick: bool, result: dict,
                 quantised_S: int | None = None):
    """The real-metric sections (`--only` runs just these): their lines, results stored in `result`.
    `quantised_S`: studies per quantised scenario (default S), more for a tighter check of <= alpha."""
    lines, checked = [], 0
    if "quantised" in which:
        result["quantised"], more, got = quantised_section(quantised_S or S, m, unit, rng, quick)
        lines += more
        checked += got
    if "skewed" in which:
        result["skewed"], more, got = skewed_section(S, m, rng, quick)
        lines += more
        checked += got
    return lines, checked


def still_stands(old: dict, S: int, m: float, rng: np.random.Generator) -> tuple[dict, list[str]]:
    """The published chosen-method rows (Gaussian, margin m) against a fresh simulation with the current
    code: since they were run, `racing` centres each prefix on its own mean with a guard scaled to the
    metric, and an arm stopped as equivalent that Holm rejects later becomes better or worse."""
    flat, looks, gaps = 0, 0, []
    for row in old.get("main", []):
        K, N, name = row["K"], row["max"], row["scenario"]
        deltas = scenario(name, S, K, m, rng)
        X = simulate(S, deltas, N, rng)
        D, scale = X[:, 1:] - X[:, :1], metric_scale(X)
        _, se = look_stats(D, START, scale)
        flat += int(np.isnan(se).sum())
        looks += se.size
        now = measure(*race(D, START, m, ALPHA, scale=scale), deltas, m, N)
        for key in ("fwer", "false_equivalence", "trials_share"):
            a, b = now[key], row["race"][key]
            if a is None or b is None:
                continue
            err = math.sqrt((a * (1 - a) + b * (1 - b)) / S) if key != "trials_share" else math.nan
            z = abs(a - b) / err if err > 0 else (0.0 if a == b else math.inf)
            gaps.append({"K": K, "max": N, "scenario": name, "measure": key, "published": b, "now": a,
                         "z": None if key == "trials_share" else z})
    tested = [g for g in gaps if g["z"] is not None]
    beyond = sum(g["z"] > 1.96 for g in tested)
    worst = {key: max((g for g in gaps if g["measure"] == key), key=lambda g: abs(g["now"] - g["published"]))
             for key in ("fwer", "false_equivalence", "trials_share")}
    check = {"looks": looks, "zero_spread_looks": flat, "comparisons": gaps, "beyond_1.96_se": beyond,
             "tested": len(tested)}

    def say(g):
        return (f"{g['now']:.3f} against {g['published']:.3f} ({g['scenario']}, K = {g['K']}, max {g['max']}; "
                f"{g['z']:.1f} standard errors)")
    line = (f"Do the rows above stand? Since they were run, `racing` computes each look's variance about its "
            "own mean, with no rule on a look without spread (to a millionth of the metric), and an arm stopped "
            "as equivalent that Holm rejects at a later look becomes better or worse. Re-simulated with the "
            f"current code ({S:,} fresh studies per row of \"The chosen method\"): {flat} of {looks:,} Gaussian "
            f"looks had zero spread, so the guard changes nothing on continuous noise; {beyond} of {len(tested)} "
            "FWER and false-equivalence figures differ from the published ones by more than 1.96 standard "
            f"errors of a difference (about {0.05 * len(tested):.0f} expected by chance). Largest gaps: FWER "
            f"{say(worst['fwer'])}, false equivalence {say(worst['false_equivalence'])}, trials used "
            f"{100 * abs(worst['trials_share']['now'] - worst['trials_share']['published']):.1f} points.")
    return check, [line]


def merge(which, args, S: int, m: float, rng: np.random.Generator, began: float) -> None:
    """`--only`: run only the new sections and merge them into the published results (race.json, race.md),
    replacing any earlier merge; the rest of the file keeps the full run's figures."""
    from results_file import RESULTS

    old = json.loads((RESULTS / "race.json").read_text())
    text = (RESULTS / "race.md").read_text()
    if ADDED[0] in text:
        text = text[:text.index(ADDED[0])].rstrip("\n") + text[text.index(ADDED[1]) + len(ADDED[1]):]
    if abs(old["margin_sd"] - m) > 1e-12:
        raise SystemExit(f"--margin {m} differs from the published results' {old['margin_sd']}")
    unit = old["noise"]["sd"]
    result = dict(old)
    lines, checked = new_sections(which, S, m, unit, rng, args.quick, result, quantised_studies(args))
    result["stands"], stand = still_stands(old, S, m, rng)
    seconds = time.time() - began
    command = f".venv/bin/python benchmarks/race.py --only {','.join(which)}" + (" --quick" if args.quick else "")
    result["merged"] = {"sections": list(which), "command": command, "studies_per_scenario": S,
                        "quantised_studies_per_scenario": quantised_studies(args), "seed": args.seed,
                        "seconds": seconds, "cross_checked_studies": checked}
    block = [ADDED[0], "", "## Racing on real metrics (added)", "",
             f"These sections were run on their own (`{command}`, {S:,} simulated studies per scenario, "
             f"{quantised_studies(args):,} for the quantised ones, seed {args.seed}, {seconds:.0f} s) and merged "
             "into the full run's results: a full run starts with a new "
             "real study for the seed noise (the one above was logged to a temporary store that is gone, with the "
             "residuals the non-Gaussian check resamples), which would change every figure. They use that study's "
             f"paired SD ({unit:.4f}) and margin ({m:g} SD)."]
    block += [""] + stand + lines + ["", ADDED[1]]
    body, targets = (text.split("\n## The targets", 1) + [None])[:2]
    text = body.rstrip("\n") + "\n\n" + "\n".join(block) + ("\n\n## The targets" + targets if targets else "\n")
    publish("race", result, text.rstrip("\n").split("\n"))


def quantised_studies(args) -> int:
    return args.studies if args.quick else max(args.studies, args.quantised_studies)
