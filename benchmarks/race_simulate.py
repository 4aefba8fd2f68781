"""The studies benchmarks/race.py simulates: their design (α, the first look, the effects, arms x max seeds, the
margins), the seed noise of a real study (`read_noise`; `run_real_study` makes a small one), and the arm values
the procedures run on: Gaussian or resampled per-trial noise (`simulate`, the true differences from `scenario`),
accuracies quantised on IMAGES images (`simulate_quantised`) and strongly skewed paired differences
(`simulate_skewed`). Effects and SDs are in units of the paired-difference SD, so that every procedure's figures
hold for any metric, except the quantised studies' (accuracy units: the lattice is the point). effects.py and
paired_checks.py use these generators too, through race.py (`import race as R`)."""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
ALPHA = 0.05
START = 3
EFFECTS = (0.5, 1.0, 1.5, 2.0)  # (b): |effect| in paired-difference SDs
CONFIGS = ((5, 8), (5, 12), (5, 20), (15, 12), (15, 20))  # (arms K, max seeds)
MARGINS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


# ---------------------------------------------------------------------------------------------------
# Noise from a real study


@dataclass
class Noise:
    sd: float  # SD of the paired difference (arm - baseline) over seeds, in the metric's units
    source: str
    residuals: np.ndarray | None = None  # two-way residuals, scaled to unit per-trial SD
    detail: dict = field(default_factory=dict)


def read_noise(uri: str, study: str, metric: str) -> Noise:
    from ablation.report.model import arm_name, collect, default_baseline
    from ablation.tracking import Outcome, find_study, study_trials

    found = find_study(uri, study)
    records = study_trials(uri, found.experiment_id, found.run.run_id)
    table: dict[str, dict[int, float]] = {}
    for r in records:
        if r.outcome == Outcome.FINISHED and metric in r.metrics:
            table.setdefault(arm_name(r.params, found.axes), {})[int(r.params["seed"])] = r.metrics[metric]
    baseline = default_baseline(collect(records, found.axes)) or min(table)
    seeds = sorted(set.intersection(*(set(v) for v in table.values())))
    names = [baseline] + sorted(a for a in table if a != baseline)
    if len(names) < 3 or len(seeds) < 3:
        raise SystemExit(f"{study}: need 3 arms and 3 seeds finished by all of them (have {len(names)}, {len(seeds)})")
    X = np.array([[table[a][s] for s in seeds] for a in names])
    D = X[1:] - X[0]
    pooled = math.sqrt(((D - D.mean(1, keepdims=True)) ** 2).sum() / (D.shape[0] * (D.shape[1] - 1)))
    resid = X - X.mean(1, keepdims=True) - X.mean(0, keepdims=True) + X.mean()
    A, S = X.shape
    sigma = math.sqrt((resid ** 2).sum() / ((A - 1) * (S - 1)))
    scaled = (resid * math.sqrt(A * S / ((A - 1) * (S - 1))) / sigma).ravel()
    detail = {"study": study, "metric": metric, "arms": names, "baseline": baseline, "seeds": seeds,
              "pooled_paired_sd": pooled, "per_arm_paired_sd": dict(zip(names[1:], D.std(1, ddof=1).tolist())),
              "mean_differences_in_sd": dict(zip(names[1:], (D.mean(1) / pooled).tolist())),
              "residual_skew": float(stats.skew(scaled)), "residual_excess_kurtosis": float(stats.kurtosis(scaled))}
    return Noise(pooled, f"study {study!r} ({len(names)} arms x {len(seeds)} seeds, {metric}) read back from {uri}",
                 scaled, detail)


def run_real_study(folder: Path) -> str:
    """A small real study with the tool: quickstart.yaml at 32 px, six seeds, logged to `folder`."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    command = [str(ROOT / ".venv" / "bin" / "ablate"), "run", str(ROOT / "search_spaces" / "quickstart.yaml"),
               "--set", "search.seeds=[0,1,2,3,4,5]", "--set", "data.image_size=32", "--set", "name=race_noise",
               "--tracking-uri", uri, "--storage", str(folder / "ray")]
    print("running a small real study for the seed noise:", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    return uri


# ---------------------------------------------------------------------------------------------------
# Simulated studies


def simulate(S: int, deltas: np.ndarray, N: int, rng: np.random.Generator,
             residuals: np.ndarray | None = None) -> np.ndarray:
    """Arm values (S, K + 1, N), baseline first: arm effect + independent per-trial noise whose paired
    difference has SD 1 (Gaussian, or resampled from a real study's residuals)."""
    K = deltas.shape[1]
    if residuals is None:
        noise = rng.standard_normal((S, K + 1, N))
    else:
        noise = rng.choice(residuals, size=(S, K + 1, N))
    X = noise / math.sqrt(2)
    X[:, 1:, :] += deltas[:, :, None]
    return X


def scenario(name: str, S: int, K: int, margin: float, rng: np.random.Generator) -> np.ndarray:
    """True mean differences (S, K) in SD units. (a) all 0; (b) 2 arms (K <= 6) or 4 arms with effects
    drawn from +-{0.5, 1, 1.5, 2}, the rest 0; (c) every arm uniform within +-margin/2."""
    if name == "a":
        return np.zeros((S, K))
    if name == "b":
        d = np.zeros((S, K))
        few = 2 if K <= 6 else 4
        d[:, :few] = rng.choice(EFFECTS, size=(S, few)) * rng.choice([-1.0, 1.0], size=(S, few))
        return d
    if name == "c":
        return rng.uniform(-margin / 2, margin / 2, size=(S, K))
    raise ValueError(name)


# Quantised metrics: accuracy on a few hundred images ---------------------------------------------

IMAGES = 200  # a validation split: every score is a multiple of 1/200
SEED_LEVEL_SD = 0.02  # the seed's shared component of the accuracy level (the part pairing removes)
# (label, baseline accuracy, discordant images each way; None: chosen to match the seed noise's SD)
QUANTISED = (("weak models, SD of the real study", 0.5, None), ("2 images", 0.85, 2.0), ("1 image", 0.9, 0.5))


def quantised_sd(level: float, discord: float, images: int = IMAGES, tau: float = SEED_LEVEL_SD) -> float:
    """SD of the paired difference (accuracy units) under `simulate_quantised` with no effect: given the
    baseline's count C, G - L has variance (images - C) g (1 - g) + C l (1 - l) and mean images g - C (g + l);
    C has variance images level (1 - level) + images (images - 1) tau^2."""
    g, lo = discord / (images * (1 - level)), discord / (images * level)
    var_c = images * level * (1 - level) + images * (images - 1) * tau ** 2
    var = images * (1 - level) * g * (1 - g) + images * level * lo * (1 - lo) + (g + lo) ** 2 * var_c
    return math.sqrt(var) / images


def simulate_quantised(S: int, effects: np.ndarray, N: int, rng: np.random.Generator, level: float,
                       discord: float, images: int = IMAGES, tau: float = SEED_LEVEL_SD) -> np.ndarray:
    """Accuracies on `images` images (S, K + 1, N), baseline first, every value a multiple of 1/images.

    Seed s gives the baseline C ~ Binomial(images, p_s) images right, p_s = level + tau z_s: the seed's
    shared level (data order, augmentation), common to every arm on that seed. Each arm is a different
    network on the SAME images: of the images - C the baseline missed it gets G ~ Binomial(images - C, g)
    right, of the C it got right it misses L ~ Binomial(C, l), and scores C + G - L. With no effect
    g = discord / (images (1 - level)) and l = discord / (images level): `discord` images flip each way on
    average, and E[G - L] = 0 exactly. Two networks that agree on all but a few images differ by a few
    images, so paired differences tie often and the first seeds' can all be equal; unpaired binomials
    cannot produce that (their difference has SD >= sqrt(2 level (1 - level) / images), 8 images at
    level 0.8). An effect of e (accuracy units) adds e images / (images - C) expected gains (e > 0) or
    losses (e < 0): E[D] = e exactly. `effects`: (S, K) true mean differences in accuracy units."""
    p = np.clip(level + tau * rng.standard_normal((S, 1, N)), 0.0, 1.0)
    right = rng.binomial(images, p)
    g = (discord + np.maximum(effects, 0.0) * images) / (images * (1 - level))
    lo = (discord + np.maximum(-effects, 0.0) * images) / (images * level)
    gain = rng.binomial(images - right, g[:, :, None] * np.ones((1, 1, N)))
    loss = rng.binomial(right, lo[:, :, None] * np.ones((1, 1, N)))
    return np.concatenate([right, right + gain - loss], axis=1) / images


# Skewed paired differences ------------------------------------------------------------------------

SKEWED = {
    "lognormal": "centred lognormal (sigma 0.6, skewness 2.3), its direction drawn per arm",
    "collapse": "1 seed in 10 collapses: the arm loses 5 bulk SDs on it and is 0.56 bulk SD better otherwise",
}


def simulate_skewed(kind: str, S: int, K: int, N: int, rng: np.random.Generator) -> np.ndarray:
    """Arm values (S, K + 1, N), baseline first, every arm's true mean difference 0 and paired SD 1, with
    strongly skewed paired differences. "lognormal": the arm's own noise is a centred lognormal (its
    direction, better-skewed or worse-skewed, drawn per arm). "collapse": the arm and the baseline share
    Gaussian seed noise as in `simulate`, but one seed in ten the arm's run collapses and loses 5 bulk
    SDs; otherwise it is 0.56 bulk SD better, so that its mean difference is 0 (an attention module that
    helps a little and sometimes destabilises training)."""
    base = rng.standard_normal((S, 1, N)) / math.sqrt(2)
    if kind == "lognormal":
        s = 0.6
        y = (np.exp(s * rng.standard_normal((S, K, N))) - math.exp(s * s / 2)) \
            / math.sqrt((math.exp(s * s) - 1) * math.exp(s * s))
        D = y * rng.choice([-1.0, 1.0], size=(S, K, 1))
    elif kind == "collapse":
        pi, loss = 0.1, 5.0
        lift = pi * loss / (1 - pi)
        bulk = rng.standard_normal((S, K, N)) / math.sqrt(2) - base  # the arm's own seed noise minus the baseline's
        collapsed = rng.random((S, K, N)) < pi
        D = (bulk + lift - collapsed * (lift + loss)) / math.sqrt(1 + pi * (1 - pi) * (lift + loss) ** 2)
    else:
        raise ValueError(kind)
    return np.concatenate([base, base + D], axis=1)
