"""Starting a study, or resuming one: what is refused before Ray starts (a store that cannot be written, a
race or data that changed, a study another driver holds, a trial this machine cannot hold), then Ray and the
study's MLflow parent run, and its trials handed to `study.fit`."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from ablation import tracking
from ablation.core import Study
from ablation.data.digest import digests
from ablation.driver import race_settings
from ablation.driver.cluster import ResourceError, check_local_resources, check_resources, connect, quiet_tune
from ablation.driver.data_check import check_data_unchanged
from ablation.driver.memory_fit import memory_to_ask
from ablation.driver.prepare import prepare_data
from ablation.driver.progress import NoView, ViewFactory
from ablation.driver.state import StudyContext, StudyOutcome, StudyState, config_of, storage_location
from ablation.driver.study import fit
from ablation.models import check_weights


def run_study(study: Study, spec_yaml: str, *, tracking_uri: str | None = None, storage: str | None = None,
              address: str | None = None, console=None, argv: Sequence[str] = (),
              spec_path: Path | None = None, view: ViewFactory = NoView) -> StudyOutcome:
    """Run the trials of `study` that have not finished before under Ray Tune, logging to MLflow
    under the study's one parent run; returns where the results are. `argv` (the command line that ran
    it, the program first) and `spec_path` (the spec's file) are the parent run's provenance; `view`
    makes the live view of the trials (the CLI's; none by default), `console` prints the rest."""
    from rich.console import Console

    console = console or Console()
    spec = study.spec
    uri = tracking.resolve_uri(tracking_uri)
    if address and uri.startswith("sqlite:"):
        raise ResourceError(f"--tracking-uri: {uri} is a SQLite file on this machine, and the trials of a Ray "
                            "cluster run on other machines that cannot write to it; start an MLflow server "
                            "(mlflow server --host ...) and pass --tracking-uri http://HOST:PORT")
    tracking.check_store(uri, writing=True)
    # First of all: refusing takes a moment, and a refused re-run must neither wait for its data nor write.
    found = _recorded(uri, spec.name)  # read once for the three checks before Ray
    _check_race_unchanged(uri, study, found)
    storage = storage_location(storage)
    trials = list(study.trials)
    # Everything a trial would find wrong with its data is found here, before Ray or MLflow is touched.
    skipped = prepare_data(trials, console)
    data = digests(t.spec.data for t in trials)
    recorded = check_data_unchanged(found, spec.name, data)
    memory = memory_to_ask(study, uri, found, console, cluster=bool(address))
    if not address:
        check_local_resources(spec)  # before the lease creates the store
    with tracking.hold_study(uri, spec.name) as lease, ThreadPoolExecutor(1) as background:
        # A new store's tables take seconds to create, and so does Ray: side by side, on a local Ray
        # (whose resources were checked above, so no store is made for a study that cannot start).
        store = None if address else background.submit(tracking.create_store, uri)
        quiet_tune()
        connect(address)
        check_resources(spec, memory_mb=memory)
        if store:
            store.result()
        pretrained = {(t.spec.model.arch, t.spec.model.pretrained) for t in trials if t.spec.model.pretrained}
        for arch, weights in pretrained:
            check_weights(arch, weights)
        # With a race's settings: what a re-run of it must not change (`_check_race_unchanged`).
        params = tracking.study_params(spec, study.arms) | {"search.seeds": spec.search.seeds, "trials": len(trials)} \
            | race_settings.race_params(study)
        experiment_id, parent = tracking.open_study(uri, spec.name, params=params, spec_yaml=spec_yaml,
                                                    description=spec.description, argv=argv, spec_path=spec_path)
        tracking.describe_study(parent, axes=study.axes, design=spec.search.design, metric=spec.metric,
                                mode=spec.mode, storage=f"{storage}/{spec.name}",
                                skipped=[{"path": s.path, "reason": s.reason} for s in skipped],
                                experiment_id=experiment_id, datasets=data.values(),
                                data_digests=recorded | {k: d.digest for k, d in data.items() if d.source_type == "local"})
        # A grid knows its trials, so a re-run skips those that finished; a search draws new ones.
        records = tracking.study_trials(uri, experiment_id, parent.run_id)
        done = {r.trial_id for r in records if r.status == tracking.Status.FINISHED} if spec.search.method == "grid" \
            else set()
        pending = [t for t in trials if t.id not in done]
        outcome = StudyOutcome(uri, experiment_id, parent.run_id, f"{storage}/{spec.name}",
                               already_finished=len(trials) - len(pending))
        if not pending and not spec.search.race:  # a race may still want seeds beyond its start
            parent.finish()
            return outcome
        context = StudyContext(spec.model_dump(mode="json"), uri, experiment_id, parent.run_id, outcome.storage,
                               lease_token=lease.token, lease_ttl=lease.ttl, memory_mb=memory)
        StudyState(context, [t.id for t in pending]).save(outcome.storage)
        return fit(study, context, pending, parent, outcome, console, view, records=records, lease=lease)


def resume_study(folder: str, *, tracking_uri: str | None = None, address: str | None = None,
                 console=None, view: ViewFactory = NoView) -> tuple[Study, StudyOutcome]:
    """Continue a study whose driver died, under its parent run: finished trials stay finished,
    unfinished and failed ones continue from their last checkpoints.

    It trusts only what ablate wrote as data: the study's JSON state, MLflow's runs and `weights_only`
    checkpoints. Ray's own experiment state (`tuner.pkl`) is a pickle, and unpickling a crafted one
    runs its code, so a fresh Tuner runs what is left instead of restoring Ray's.
    """
    from rich.console import Console

    console = console or Console()
    folder = storage_location(str(folder))
    state = StudyState.load(folder)
    uri = tracking.resolve_uri(tracking_uri or state.context.tracking_uri)
    tracking.check_store(uri, writing=True)
    context = replace(state.context, tracking_uri=uri, storage=folder)
    tracking.find_parent(uri, context.experiment_id, context.parent_run_id)
    study = state.study(folder)
    spec = study.spec
    found = _recorded(uri, spec.name)
    _check_race_unchanged(uri, study, found)  # a state file from an older version, or edited, may differ
    check_data_unchanged(found, spec.name, digests(t.spec.data for t in study.trials))
    memory = memory_to_ask(study, uri, found, console, cluster=bool(address))
    with tracking.hold_study(uri, spec.name) as lease:
        context = replace(context, lease_token=lease.token, lease_ttl=lease.ttl, memory_mb=memory)
        records = tracking.study_trials(uri, context.experiment_id, context.parent_run_id)
        ended = {r.trial_id for r in records if r.ended}
        pending = [t for t in study.trials if t.id in set(state.trials) and t.id not in ended]
        redo, samples = [], None
        if spec.search.method != "grid":  # drawn trials: continue the unfinished ones, draw the rest anew
            redo = [config_of(spec, r) for r in records if not r.ended]
            samples = max(0, spec.search.num_samples - sum(r.ended for r in records))
            pending = []
        console.print(f"[bold]{spec.name}[/bold]: resuming; {sum(r.ended for r in records)} of its trials had ended "
                      "and stay as they are, the others go on from their last checkpoints", highlight=False)
        prepare_data(pending if spec.search.method == "grid" and not spec.search.race else list(study.trials), console)
        outcome = StudyOutcome(uri, context.experiment_id, context.parent_run_id, folder)
        parent = tracking.reopen_study(uri, context.parent_run_id)
        if not pending and not samples and not spec.search.race:
            parent.finish()
            return study, outcome
        quiet_tune()
        connect(address)
        check_resources(spec, memory_mb=memory)
        return study, fit(study, context, pending, parent, outcome, console, view, records=records, redo=redo[:samples],
                          samples=samples,
                          lease=lease)



def _recorded(uri: str, name: str) -> tracking.StudyRecord | None:
    """The study's parent run if it ran on this store before, else None. It only reads."""
    try:
        return tracking.find_study(uri, name)
    except (tracking.StoreNotFound, tracking.StudyNotFound):
        return None


def _check_race_unchanged(uri: str, planned: Study, study: tracking.StudyRecord | None) -> None:
    """Refuse (`RaceChanged`) to run a race again with settings other than those its parent run `study`
    records (see race_settings.py). It only reads: a study that never ran has nothing to compare with."""
    if study is None:
        return
    stored = race_settings.recorded(study.params, study.tags.get(tracking.Tag.RACE_BASELINE))
    arms_run = None
    if stored and race_settings.ARMS not in stored:
        # Older versions did not log the arms. The trial runs' `arm` params are then the only record
        # (one search over the children, only for such a store): every arm that has a run was raced.
        arms_run = {r.params["arm"] for r in tracking.study_trials(uri, study.experiment_id, study.run.run_id)
                    if "arm" in r.params}
    changed = race_settings.changes(stored, race_settings.race_params(planned), arms_run=arms_run)
    if changed:
        raise race_settings.RaceChanged(race_settings.describe(planned.name, changed))
