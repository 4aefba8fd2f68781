"""What `ablate` says besides its commands' own words: examples in every help, usage lines that read
`ablate run SPEC`, `--version`, and the libraries' start-up chatter kept out of the terminal.

Only typer and rich are imported here, so `ablate --help` stays fast. Every example runs as written
against the specs in search_spaces/ (tests/test_cli_help.py parses each and loads its spec).
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# Each command's examples: (what it does, the command line), keyed by the command's name.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "ablate": [("where one attention module helps a ResNet-18: 6 trials, minutes on a laptop",
                "ablate run quickstart"),
               ("its statistics, tables and plots", "ablate report quickstart")],
    "run": [("6 placements of one module in ResNet-18, minutes on a laptop", "ablate run quickstart"),
            ("the paper's 16 placements in ResNet-50, 2 epochs each instead of 30",
             "ablate run placement --set train.epochs=2")],
    "resume": [("continue the quickstart study after Ctrl-C or a crash", "ablate resume ablate_runs/quickstart")],
    "inspect": [("one placement of the quickstart study", "ablate inspect quickstart "
                 "--set model.placement=layer4"),
                ("the default ResNet-50 at ImageNet's input size and classes",
                 "ablate inspect --set data.image_size=224 --classes 1000")],
    "plan": [("48 trials: each arm's size and compute, and the hours they would take here",
              "ablate plan placement"),
             ("what three seeds of the quickstart study would cost",
              "ablate plan quickstart --set 'search.seeds=[0, 1, 2]'")],
    "schema": [("for an editor to complete and check specs (its YAML support reads JSON Schemas)",
                "ablate schema > spec.schema.json")],
    "data": [("a small AI-HUB-like tree, then what a reader finds in it",
              "ablate data generate --root /tmp/aihub_demo --per-class 20"),
             ("", "ablate data summary --dataset aihub --root /tmp/aihub_demo")],
    "summary": [("what the AI-HUB reader finds, decoding every image",
                 "ablate data summary --dataset aihub --root /tmp/aihub_demo --verify")],
    "generate": [("20 training photos per emotion in the AI-HUB layout",
                  "ablate data generate --root /tmp/aihub_demo --per-class 20")],
    "report": [("after `ablate run search_spaces/quickstart.yaml`", "ablate report quickstart"),
               ("against another configuration than the one without attention",
                "ablate report quickstart --baseline placement=layer4")],
    "runs": [("the quickstart study's trials: run ids, arms, seeds, scores, kept weights", "ablate runs quickstart"),
             ("one configuration's", "ablate runs quickstart --arm placement=layer3")],
    "explain": [("4 test images through the layer3 arm's trained run",
                 "ablate explain quickstart --arm placement=layer3 --from-split test --n 4"),
                ("two runs side by side (ids from ablate runs), scored on the generated faces' cues",
                 "ablate explain RUN_ID OTHER_RUN_ID --from-split test --score")],
    "ui": [("the MLflow UI on ./mlruns, at http://127.0.0.1:5000", "ablate ui"),
           ("another store, on another port", "ablate ui --tracking-uri /tmp/study/mlflow.db --port 5001")],
}

# What an option's value is, where its name does not say it; any other option shows its name.
METAVARS = {"tracking_uri": "URI", "address": "HOST:PORT", "storage": "DIR|URI", "out": "DIR", "root": "DIR",
            "images": "PATH", "from_split": "SPLIT", "n": "N", "layer": "MODULE", "baseline": "CONFIG",
            "host": "HOST", "port": "PORT", "dataset": "NAME", "layout": "NAME", "classes": "N", "seed": "N",
            "per_class": "N", "valid_per_class": "N", "width": "PX", "height": "PX"}

# Start-up messages of the libraries a study starts, which say nothing a user acts on; --verbose shows them.
NOISE = {
    "mlflow.store.db.utils": logging.WARNING,  # "Creating initial MLflow database tables...", "Updating database tables"
    "alembic.runtime.migration": logging.WARNING,  # the schema migrations behind them
    "ray._private.authentication.authentication_token_setup": logging.ERROR,  # "Token authentication is enabled ..."
    # Every trial failure with Ray's whole message and traceback (a memory kill's runs to 200 lines): ablate
    # says each cause in one line at the end, the trial's run keeps its error, and Tune's error.txt the rest.
    "ray.tune.execution.tune_controller": logging.CRITICAL,
    "ray.tune.tune": logging.CRITICAL,  # "Trials did not complete: [...]", which the summary says by name
    "ablation.driver.ray": logging.CRITICAL,  # the raylet's "a worker died" paragraphs (`cluster.RAY_ERRORS`)
}


def examples(name: str) -> str | None:
    """The epilog of command `name`: its examples, each under what it does."""
    lines = []
    for what, command in EXAMPLES.get(name, []):
        lines += [f"[dim]# {escape(what)}[/dim]"] if what else []
        lines.append(f"[bold]{escape(command)}[/bold]")
    return "[b]Examples[/b]\n" + "\n".join(lines) if lines else None


def _tidy(params) -> None:
    """Name each option's value instead of its type (`--tracking-uri URI`, not `<str>`) and show none
    for a flag or an argument, whose name says it."""
    for param in params:
        if isinstance(param, TyperOption):
            param.metavar = "" if param.is_flag else param.metavar or METAVARS.get(param.name, param.name.upper())
        elif isinstance(param, TyperArgument):
            param.display_type_rich = lambda ctx: None  # typer shows `SPEC <path>`; SPEC says it


class Command(TyperCommand):
    """A command whose help ends with its examples and whose usage reads `ablate run [OPTIONS] SPEC`."""

    def __init__(self, name, *, epilog=None, **kwargs) -> None:
        super().__init__(name, epilog=epilog or examples(name), **kwargs)

    def format_help(self, ctx, formatter) -> None:
        _tidy(self.get_params(ctx))
        super().format_help(ctx, formatter)

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or param.name.upper()
                name += "..." if param.nargs != 1 and not name.endswith("...") else ""
                pieces.append(name if param.required else f"[{name}]")
        return pieces


class Group(TyperGroup):
    """A group of commands (`ablate`, `ablate data`) whose help ends with its examples."""

    def __init__(self, *, name=None, epilog=None, **kwargs) -> None:
        super().__init__(name=name, epilog=epilog or examples(name or "ablate"), **kwargs)

    def format_help(self, ctx, formatter) -> None:
        _tidy(self.get_params(ctx))
        super().format_help(ctx, formatter)


def _print_version(value: bool) -> None:
    """`--version`: the version the study's runs record, e.g. `ablate 0.1.0+g54c5ff0c0611` from a git
    checkout (an editable install), else the installed distribution's `ablate 0.1.0`."""
    if value:
        from ablation.tracking.provenance import ablate_version

        print(f"ablate {ablate_version()}")
        raise typer.Exit()


Version = Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                       help="print ablate's version and exit")]
Verbose = Annotated[bool, typer.Option("--verbose", help="also show Ray's and MLflow's start-up messages")]


def next_step(study: str, tracking_uri: str) -> str:
    """Where to see a study just run in the MLflow UI (`study_line`), then the command that reports on
    it, naming its store unless `ablate report` finds it anyway."""
    from ablation.tracking import resolve_uri

    store = "" if tracking_uri == resolve_uri(None) else f" --tracking-uri {tracking_uri}"
    report = f"Next, its statistics and plots:  [bold]ablate report {escape(study + store)}[/bold]"
    link = study_line(study, tracking_uri)
    return f"{link}\n{report}" if link else report


def study_line(study: str, tracking_uri: str) -> str | None:
    """The link that opens the study in the MLflow UI grouped by arm (`tracking.study_link`), and for a
    local store the command that serves it there; None if the store has no such study."""
    from ablation.tracking import study_links, ui_address, ui_command

    link = study_links(tracking_uri, ui_address(tracking_uri)).get(study)
    if link is None:
        return None
    served = "" if tracking_uri.startswith(("http://", "https://")) else f" (after {ui_command(tracking_uri)})"
    return f"In MLflow's UI{escape(served)}:  {escape(link)}"


MAX_LINKS = 10


def ui_banner(uri: str, host: str, port: int) -> str:
    """What `ablate ui` says once the server answers: its address, and a link to each study of the store
    as `tracking.study_link` opens it (the latest first), read without creating the store."""
    from ablation.tracking import study_links, ui_address

    if uri.startswith(("http://", "https://")):
        lines = [f"{escape(uri)} is a server already: open it in a browser."]
    else:
        lines = [f"MLflow UI for {escape(uri)} at [bold]http://{host}:{port}[/bold] (Ctrl-C stops it)"]
    links = list(study_links(uri, ui_address(uri, host=host, port=port)).items())
    if links:
        lines.append("Each study, its trials grouped by arm:")
        lines += [f"  {escape(name)}:  {escape(link)}" for name, link in links[:MAX_LINKS]]
        if len(links) > MAX_LINKS:
            lines.append(f"  and {len(links) - MAX_LINKS} more (the UI lists them all)")
    return "\n".join(lines)


def announce_when_up(address: str, banner: str, console, *, timeout: float = 300.0) -> int:
    """Print `banner` once `address`/health answers, or say the server never did; give up as soon as the
    process that forked this one (the server) is gone. The exit status of the watcher."""
    import os
    import time
    import urllib.request

    server, deadline = os.getppid(), time.monotonic() + timeout
    while time.monotonic() < deadline and os.getppid() == server:
        try:
            with urllib.request.urlopen(f"{address}/health", timeout=2):
                console.print(banner, highlight=False, soft_wrap=True)
                return 0
        except OSError:
            time.sleep(0.25)
    if os.getppid() == server:
        console.print(f"[yellow]warning:[/yellow] the MLflow server did not answer at {address} within "
                      f"{timeout:.0f} s", highlight=False, soft_wrap=True)
    return 1


def quiet_libraries(verbose: bool) -> None:
    """Keep MLflow's and Ray's start-up messages (`NOISE`) out of the terminal, unless `verbose`."""
    if not verbose:
        for logger, level in NOISE.items():
            logging.getLogger(logger).setLevel(level)
