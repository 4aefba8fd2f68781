"""The `ablate` command: parse, call the API, print. Heavy imports live inside the commands."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ablation.cli import help as cli_help

from ablation.cli import views
from ablation.cli.common import STUDY_STOPPED, TAKEN_OVER, console, errors
from ablation.cli.common import check_out as _check_out
from ablation.cli.common import fail as _fail
from ablation.cli.common import load as _load
from ablation.cli.common import shipped_spec
from ablation.cli import runs as study_runs
from ablation.cli.data import data_app

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, cls=cli_help.Group,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Distributed ablation studies of attention modules in ResNets (Ray Tune + MLflow).")
def _live_view(**settings):
    """The terminal's live view of a running study, which the driver feeds."""
    from ablation.cli.progress import StudyProgress

    return StudyProgress(console, **settings)


app.add_typer(data_app, name="data")


@app.callback()
def main(version: cli_help.Version = False) -> None:
    """Write a study spec (see search_spaces/), then `ablate run SPEC`."""


@app.command(cls=cli_help.Command)
def run(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", callback=shipped_spec,
                                              help="study spec (YAML), or a shipped one's name (quickstart)")],
    overrides: Annotated[list[str], typer.Option("--set", metavar="KEY=VALUE",
                                                 help="override a spec key, e.g. --set train.epochs=1")] = [],
    address: Annotated[Optional[str], typer.Option(help="Ray cluster to join (auto or HOST:PORT); default: a local Ray")] = None,
    storage: Annotated[Optional[str], typer.Option(help="where Ray keeps trial results and checkpoints: a folder "
                                                   "(shared, on a cluster) or an s3:// or gs:// URI")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow tracking URI; default $MLFLOW_TRACKING_URI or ./mlruns")] = None,
    verbose: cli_help.Verbose = False,
) -> None:
    """Run one trial per configuration and seed of SPEC under Ray Tune, logged to MLflow."""
    import sys

    import yaml

    study = _load(spec_path, overrides)
    views.header(console, study)

    from ablation.data.records import DataError
    from ablation.tracking.lease import StudyBusy
    from ablation.models import WeightsError
    from ablation.driver.race_settings import RaceChanged
    from ablation.driver.data_check import DataChanged
    from ablation.driver.halts import Halted
    from ablation.driver.cluster import ResourceError, StudyStopped
    from ablation.driver.launch import run_study
    from ablation.driver.state import storage_location
    from ablation.tracking import LeaseLost, StoreUnusable, resolve_uri

    cli_help.quiet_libraries(verbose)
    spec_yaml = yaml.safe_dump(study.spec.model_dump(mode="json"), sort_keys=False)
    try:
        outcome = run_study(study, spec_yaml, tracking_uri=tracking_uri, storage=storage, address=address,
                            console=console, argv=sys.argv, spec_path=spec_path, view=_live_view)
    except (ResourceError, DataError, DataChanged, WeightsError, RaceChanged) as err:
        where = {DataError: "data: ", DataChanged: "data: ", WeightsError: "model.pretrained: "}.get(type(err), "")
        raise _fail(f"{spec_path}: {where}{err}") from None
    except (StoreUnusable, StudyBusy) as err:
        raise _fail(str(err)) from None
    except KeyboardInterrupt:
        errors.print(f"[yellow]interrupted.[/yellow] Continue with:  ablate resume {storage_location(storage)}/{study.name}")
        raise typer.Exit(130) from None
    except (StudyStopped, Halted) as err:
        raise _stopped(err) from None
    except LeaseLost as err:
        raise _stopped(err, TAKEN_OVER) from None
    except Exception as err:  # the store failed the driver's own writes, after the trials
        folder = f"{storage_location(storage)}/{study.name}"
        raise _store_stopped(err, lambda: resolve_uri(tracking_uri), folder) from None
    if outcome.already_finished:
        console.print(f"{outcome.already_finished} of {len(study.trials)} trials had finished in an earlier run of "
                      "this study and were not run again.")
    _conclude(study, outcome, resume_hint=f"ablate resume {outcome.storage}")


@app.command(cls=cli_help.Command)
def resume(
    study_dir: Annotated[str, typer.Argument(metavar="STUDY_DIR", help="the study's folder, ./ablate_runs/<study> "
                                                                     "(or its s3:// or gs:// URI)")],
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow tracking URI; default: the study's own")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster to join (auto or HOST:PORT)")] = None,
    verbose: cli_help.Verbose = False,
) -> None:
    """Continue a study whose driver stopped: finished trials stay, the rest continue from their checkpoints."""
    from ablation.data.records import DataError
    from ablation.tracking.lease import StudyBusy
    from ablation.driver.race_settings import RaceChanged
    from ablation.driver.data_check import DataChanged
    from ablation.driver.state import StateError, StudyState, storage_location
    from ablation.driver.halts import Halted
    from ablation.driver.cluster import ResourceError, StudyStopped
    from ablation.driver.launch import resume_study
    from ablation.tracking import LeaseLost, StoreNotFound, StoreUnusable, StudyNotFound, resolve_uri

    cli_help.quiet_libraries(verbose)
    try:
        study, outcome = resume_study(study_dir, tracking_uri=tracking_uri, address=address, console=console,
                                      view=_live_view)
    except (ResourceError, StateError, DataError, DataChanged, StoreNotFound, StoreUnusable, StudyBusy,
            StudyNotFound, RaceChanged) as err:
        raise _fail(str(err)) from None
    except KeyboardInterrupt:
        errors.print(f"[yellow]interrupted.[/yellow] Continue with:  ablate resume {study_dir}")
        raise typer.Exit(130) from None
    except (StudyStopped, Halted) as err:
        raise _stopped(err) from None
    except LeaseLost as err:
        raise _stopped(err, TAKEN_OVER) from None
    except Exception as err:  # the store failed the driver's own writes, after the trials
        raise _store_stopped(err, lambda: resolve_uri(tracking_uri or StudyState.load(
            storage_location(study_dir)).context.tracking_uri), study_dir) from None
    _conclude(study, outcome, resume_hint=f"ablate resume {study_dir}")


def _stopped(err: Exception, status: int = STUDY_STOPPED) -> typer.Exit:
    errors.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
    return typer.Exit(status)


def _store_stopped(err: Exception, uri: Callable[[], str], folder: str) -> typer.Exit:
    """Exit 3 with one line if `err` is the study's store (at `uri()`) failing mid-study; else `err` goes on."""
    from ablation.driver.halts import store_stopped
    from ablation.tracking.runs import store_failure

    if store_failure(err, "") is None:
        raise err
    return _stopped(store_stopped(err, uri(), folder))


def _by_cause(trials: dict[str, str]) -> dict[str, list[str]]:
    """Trial names grouped by what happened to them, in the order first met."""
    causes: dict[str, list[str]] = {}
    for name, cause in trials.items():
        causes.setdefault(cause, []).append(name)
    return causes


def _named(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return "; ".join(names[:shown]) + more


def _conclude(study, outcome, *, resume_hint: str) -> None:
    """The ranking, then what did not go well, with the exit status that says so, and the next step."""
    from ablation.tracking import Tag

    spec = study.spec
    _print_ranking(study, outcome)
    if outcome.race:
        from ablation.report.race import race_values, read_race
        from ablation.report.model import collect, label
        from ablation.tracking import best, study_trials

        records = study_trials(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id)
        arms = collect(records, study.axes)
        views.race(console, read_race(study, *race_values(arms, best(spec.metric))), label(spec.metric))
    if outcome.stopped_early:
        console.print(f"{len(outcome.stopped_early)} trials were stopped early by {spec.search.scheduler} "
                      f"(tagged {Tag.STOPPED_EARLY}, with {Tag.STOPPED_AT_EPOCH})")
    for name in outcome.diverged:
        errors.print(f"[yellow]trial {escape(name)} diverged[/yellow] (its loss blew up; recorded, not retried)",
                     highlight=False)
    retried = {name: cause for name, cause in outcome.memory_kills.items()
               if name not in outcome.errors and name not in outcome.unfinished}
    for cause, names in _by_cause(retried).items():
        n = len(names)
        errors.print(f"[yellow]{n} trial{'s were' if n > 1 else ' was'} {escape(cause)}[/yellow] and went on from "
                     f"{'their' if n > 1 else 'its'} last checkpoint ({escape(_named(names))}; "
                     f"{Tag.LAST_FAILURE}=oom)", highlight=False, soft_wrap=True)
    if outcome.unfinished:
        errors.print(f"[yellow]interrupted:[/yellow] {len(outcome.unfinished)} trials did not finish. "
                     f"Continue with:  {resume_hint}", highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    # One line per cause: a memory kill is the same for every trial it hit on a node.
    for error, names in _by_cause(outcome.errors).items():
        n, their = len(names), "their runs" if len(names) > 1 else "its run"
        errors.print(f"[red]{n} trial{'s' * (n > 1)} failed:[/red] {escape(error)}; see {their} in MLflow "
                     f"({escape(_named(names))}); `{resume_hint}` retries {'them' if n > 1 else 'it'}",
                     highlight=False, soft_wrap=True)
    console.print(cli_help.next_step(spec.name, outcome.tracking_uri), highlight=False, soft_wrap=True)
    if outcome.errors or outcome.diverged:
        raise typer.Exit(1)


@app.command(cls=cli_help.Command)
def inspect(
    spec_path: Annotated[Optional[Path], typer.Argument(metavar="SPEC", callback=shipped_spec,
                                                        help="study spec, or a shipped one's name; default: the "
                                                             "defaults")] = None,
    overrides: Annotated[list[str], typer.Option("--set", metavar="KEY=VALUE", help="override a spec key")] = [],
    classes: Annotated[Optional[int], typer.Option("--classes", min=1, help="classifier outputs; default: the "
                                                   "dataset's classes (1000 reproduces ImageNet figures)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    latency: Annotated[bool, typer.Option("--latency", help="also time its CPU latency (a minute at 224 px)")] = False,
) -> None:
    """Parameters and MACs of the model a spec describes, at its input size, and its CPU latency if asked."""
    import json

    m, data = _load(spec_path, overrides, model_and_data=True)

    from ablation.accounting import variant_figures
    from ablation.models import WeightsError

    try:
        figures = variant_figures(m, data, num_classes=classes, latency=latency)
    except WeightsError as err:
        raise _fail(f"model.pretrained: {err}") from None
    if as_json:
        print(json.dumps(figures))
        return
    views.costs(console, m, figures)


@app.command(cls=cli_help.Command)
def plan(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", callback=shipped_spec,
                                              help="study spec (YAML), or a shipped one's name (quickstart)")],
    overrides: Annotated[list[str], typer.Option("--set", metavar="KEY=VALUE", help="override a spec key")] = [],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    gpu: Annotated[Optional[str], typer.Option(metavar="NAME", help="also estimate GPU-hours on one of: t4, v100, "
                                               "a10, l4, a100, h100 (peak fp16/bf16, at 30% utilisation)")] = None,
    list_trials: Annotated[bool, typer.Option("--trials", help="also list each trial's id, arm and seed")] = False,
) -> None:
    """Expand SPEC without running it: its arms, each one's size and compute, the study's cost."""
    import dataclasses
    import json

    from ablation.plan import GPU_UTILISATION, GPUS, gpu_hours, plan_study
    if gpu is not None and gpu not in GPUS:
        raise _fail(f"--gpu {gpu}: expected one of {', '.join(GPUS)}")

    # A dataset kept on another machine is priced from the spec's sizes.
    study = _load(spec_path, overrides, data_on_disk=False)
    with console.status("pricing each arm (and timing this machine's speed, until it is cached)"):
        try:
            p = plan_study(study)
        except ValueError as err:
            raise _fail(f"{spec_path}: {err}") from None
    if as_json:
        print(json.dumps({
            "trials": [{"id": t.id, "arm": t.arm, "seed": t.seed, "overrides": t.overrides} for t in p.trials],
            "arms": [dataclasses.asdict(a) for a in p.arms],
            "design": study.factorial and study.factorial.summary(), "total_macs": p.total_macs, "speed": dataclasses.asdict(p.speed), "concurrent": p.concurrent,
            "data_note": p.data_note, "gpu_hours": gpu and gpu_hours(p.total_macs, gpu),
            "estimated_seconds": p.estimated_seconds, "most_macs": p.most_macs, "most_seconds": p.most_seconds,
        }))
        return
    views.plan(console, study, p, gpu=gpu and (gpu, GPUS[gpu], GPU_UTILISATION, gpu_hours(p.total_macs, gpu)),
               list_trials=list_trials)


@app.command(cls=cli_help.Command)
def schema() -> None:
    """The study spec's JSON Schema, for an editor to check and complete specs (every key and option, its choices)."""
    import json

    from ablation.core import json_schema

    print(json.dumps(json_schema(), indent=1))


@app.command(cls=cli_help.Command)
def report(
    study: Annotated[str, typer.Argument(metavar="STUDY", help="the study's name (its MLflow experiment)")],
    baseline: Annotated[Optional[str], typer.Option(help="the configuration to compare against, as the report "
                                                    "names it; default: the one without attention")] = None,
    out: Annotated[Optional[Path], typer.Option(help="folder for report.md/.csv/.html and the PNGs; "
                                                "default ./reports/<study>")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow tracking URI; default $MLFLOW_TRACKING_URI or ./mlruns")] = None,
) -> None:
    """Seed statistics of a study: which differences survive seed noise, at what cost, with pictures."""
    from ablation.report.make import make_report
    from ablation.tracking import REPORT_ARTIFACTS, StoreNotFound, StoreUnusable, StudyNotFound, check_store, resolve_uri

    uri = resolve_uri(tracking_uri)
    folder = out or Path("reports") / study
    _check_out(folder, "report.md, report.html, report.csv and the figures")
    try:
        check_store(uri, writing=False)
        made, written, not_logged = make_report(uri, study, folder, baseline=baseline)
    except (StoreNotFound, StoreUnusable, StudyNotFound, ValueError) as err:
        raise _fail(str(err)) from None
    views.report(console, made)
    if not_logged:
        console.print(f"Wrote {len(written)} files to {folder} (open {folder / 'report.html'}).", highlight=False,
                      soft_wrap=True)
        errors.print(f"[red]error:[/red] the store {escape(uri)} could not be written, so the report is not among "
                     f"the study's artifacts; it is only in {escape(str(folder))} ({escape(not_logged)})",
                     highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"Wrote {len(written)} files to {folder} (open {folder / 'report.html'}); "
                  f"also logged as the artifacts {REPORT_ARTIFACTS}/ of the study's parent run.", highlight=False,
                  soft_wrap=True)


app.command(cls=cli_help.Command)(study_runs.runs)
app.command(cls=cli_help.Command)(study_runs.explain)


@app.command(cls=cli_help.Command)
def ui(
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow tracking URI; default $MLFLOW_TRACKING_URI or ./mlruns")] = None,
    host: Annotated[str, typer.Option(help="address to listen on; anything but loopback exposes the runs")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 5000,
) -> None:
    """Open the MLflow UI on a study store: starts `mlflow server` on 127.0.0.1 and prints its address."""
    import os
    import sys

    from ablation.tracking import resolve_uri, server_command

    uri = resolve_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):  # a server already: nothing to start
        console.print(cli_help.ui_banner(uri, host, port), highlight=False, soft_wrap=True)
        return
    _check_port_free(host, port)
    banner = cli_help.ui_banner(uri, host, port)
    console.print(f"Starting the MLflow server for {escape(uri)} on {host}:{port} ...", highlight=False, soft_wrap=True)
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # ~2 GB less, and nothing ablate needs
                        "PYTHONWARNINGS": _SERVER_WARNINGS}
    command = server_command(uri, host=host, port=port)
    sys.stdout.flush()
    if os.fork() == 0:  # a watcher, which gives the link once the server answers at it (15-20 s), then goes
        os._exit(cli_help.announce_when_up(f"http://{host}:{port}", banner, console))
    # The server takes this process's place, so Ctrl-C and a service manager's SIGTERM reach it directly.
    os.execve(command[0], command, env)


# Deprecation notices meant for MLflow's developers, among them Starlette's about its WSGI bridge (a UserWarning).
_SERVER_WARNINGS = "ignore::DeprecationWarning,ignore:starlette.middleware.wsgi is deprecated"


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on, before printing a link to it: the server would fail
    among its own log lines, after the link."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise _fail(f"--port {port}: {host}:{port} is not free ({err.strerror}); pass another, e.g. "
                        f"--port {port + 1}") from None


def _print_ranking(study, outcome) -> None:
    from ablation.report.model import rank
    from ablation.tracking import study_trials, ui_command

    records = study_trials(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id)
    console.print()
    spec = study.spec
    views.ranking(console, study, rank(records, study.axes, spec.metric, spec.mode))
    console.print(f"MLflow: experiment [bold]{spec.name}[/bold], parent run {outcome.parent_run_id}")
    console.print(f"Open the UI:  {ui_command(outcome.tracking_uri)}", highlight=False, soft_wrap=True)
    console.print(f"Trial files and checkpoints: {outcome.storage}", highlight=False, soft_wrap=True)


def command() -> None:
    """The `ablate` command as its console script and `python -m ablation.cli` run it: the app, then
    `gc.freeze()` on the way out. Python's last act is a garbage collection over every object still
    alive, which after a study (torch's, Ray's, MLflow's and SciPy's) took 2 s of the 4.4 s from its
    last line to the prompt (`benchmarks/exit.py`). Nothing of ablate's waits on it: files are closed
    where they are written, and what must happen at exit (Ray's shutdown, temporary files' removal)
    is registered with atexit, which still runs."""
    try:
        app()
    finally:
        gc.freeze()


if __name__ == "__main__":
    command()
