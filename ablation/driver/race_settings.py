"""What a race's decisions depend on, as its parent run records them, and what a re-run changed.

A race decides from the finished runs under one parent run, and every `ablate run` of the study (or
`ablate resume`) decides again with the spec it is given. Its guarantee (a wrong decision with chance
at most alpha, and more data never undo one) holds only for the settings it started with: raising
max seeds after "undecided at max", a narrower margin, another baseline, metric or set of arms would
re-decide the same runs under new rules, and undo decisions. So the first run logs these settings as
params (which MLflow never changes) and a later run that differs is refused (`changes`).

Pure: no MLflow and no Ray here; study.py reads the store and calls it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ablation.core import Study

PREFIX = "search.race."
# The race's own copies of settings the spec keeps elsewhere. They sit under search.race. so that a study
# first run without a race (whose `search.seeds` param is the grid's) records the race's own seeds when
# it becomes one: MLflow keeps a param's first value.
SEEDS = f"{PREFIX}seeds"  # the seed order: max seeds is its length, and each arm uses a prefix of it
ARMS = f"{PREFIX}arms"  # the arms the design expands to: Holm's correction counts them
BASELINE = f"{PREFIX}baseline"  # the arm it resolves to, not the spec's value (by default null)
# The spec's own keys; only a race logs them (a study's tags say its metric too, but a re-run rewrites tags).
METRIC, MODE = "metric", "mode"
# The spec key a message names for each param that is not one itself.
SPEC_KEYS = {SEEDS: "search.seeds", ARMS: "arms"}
_PARAM_LIMIT = 6000  # characters MLflow keeps of a param


class RaceChanged(ValueError):
    """A re-run of a race with settings other than those its decisions were made with."""


def race_params(study: Study) -> dict[str, str]:
    """The race's settings as its parent run's params, each spelled as MLflow stores it ({} for no race)."""
    spec = study.spec
    race = spec.search.race
    if race is None:
        return {}
    # Every key of search.race, so that one added to the spec later is compared without a change here.
    params = {f"{PREFIX}{key}": _text(getattr(race, key)) for key in type(race).model_fields}
    return params | {BASELINE: study.baseline, SEEDS: json.dumps(spec.search.seeds),
                     ARMS: _arms_text(study.arm_names), METRIC: spec.metric, MODE: spec.mode}


def recorded(params: Mapping[str, str], baseline_tag: str | None = None) -> dict[str, str]:
    """The race settings among a parent run's `params` ({} if it never raced). `baseline_tag`: its
    `ablate.race.baseline` tag, which versions that logged none of these params left after a race:
    for such a study, its baseline and first run's seeds are all there is to compare (its arms are in
    its trial runs, see `changes`)."""
    stored = {k: v for k, v in params.items() if k.startswith(PREFIX) or k in (METRIC, MODE)}
    if any(k.startswith(PREFIX) for k in stored):
        return stored
    if baseline_tag is None:
        return {}
    return {BASELINE: baseline_tag} | ({SEEDS: params["search.seeds"]} if "search.seeds" in params else {})


def changes(stored: Mapping[str, str], current: Mapping[str, str], *,
            arms_run: set[str] | None = None) -> list[tuple[str, str, str]]:
    """Each race setting `current` (`race_params` of the new spec) gives otherwise than `stored`
    (`recorded`), as (spec key, old, new). Only what is stored is compared: a store from an older
    version lacks some keys. Without a stored ARMS, `arms_run` (the arms of the study's trial runs)
    stands in, for removed arms only: an arm without runs may just not have started."""
    if not stored:
        return []
    if not current:  # the spec no longer races: its grid would give seeds the race withheld
        race = ", ".join(f"{k.removeprefix(PREFIX)}: {v}" for k, v in stored.items()
                         if k.startswith(PREFIX) and k not in (SEEDS, ARMS))
        return [("search.race", f"{{{race}}}", "null")]
    found = []
    for key, new in current.items():
        if key == ARMS or key not in stored or _value(stored[key]) == _value(new):
            continue
        found.append((SPEC_KEYS.get(key, key), stored[key], new))
    new_arms = _value(current[ARMS]) if ARMS in current else None
    if ARMS in stored:
        old_arms = _value(stored[ARMS])
        if isinstance(old_arms, list) and isinstance(new_arms, list):
            added, removed = set(new_arms) - set(old_arms), set(old_arms) - set(new_arms)
            if added or removed:
                found.append(("arms", _list(old_arms), f"{_list(new_arms)} ({_arm_change(added, removed)})"))
        elif old_arms != new_arms:  # too many arms to list: their digests differ
            found.append(("arms", stored[ARMS], current[ARMS]))
    elif arms_run and isinstance(new_arms, list) and (removed := arms_run - set(new_arms)):
        found.append(("arms", f"{_list(arms_run)} (the arms with runs)",
                      f"{_list(new_arms)} ({_arm_change(set(), removed)})"))
    return found


def describe(name: str, found: list[tuple[str, str, str]]) -> str:
    """The refusal: each changed key with its old and new value, and how to start a new race instead."""
    listed = "; ".join(f"{key}: {old} -> {new}" for key, old, new in found)
    return (f"study {name!r} raced with other settings, and its decisions hold only for those; this run would "
            f"re-decide its runs under new rules, so nothing was run. Changed: {listed}. To start a new race, "
            f"give the study a new name (name: in the spec, or --set name=NEW_NAME); to continue this one, put "
            f"the settings back.")


def _text(value: Any) -> str:
    """A value as MLflow stores a param (`tracking.as_param`), numbers and lists as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _value(text: str) -> Any:
    """A stored param read back, so that 0.1 and 0.10, or 1 and 1.0, are the same setting."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _arms_text(arms: list[str]) -> str:
    text = json.dumps(arms)
    if len(text) <= _PARAM_LIMIT:
        return text
    # MLflow would cut a longer param short; a digest of the sorted labels still tells a change.
    digest = hashlib.sha1(json.dumps(sorted(arms)).encode()).hexdigest()[:12]
    return f"{len(arms)} arms, sha1 {digest}"


def _list(arms) -> str:
    return json.dumps(sorted(arms))


def _arm_change(added: set[str], removed: set[str]) -> str:
    parts = ([f"added {_list(added)}"] if added else []) + ([f"removed {_list(removed)}"] if removed else [])
    return "; ".join(parts)
