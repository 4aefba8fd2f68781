"""Two commits timed side by side, interleaved, on one machine: a slowdown told apart from added tests.

It reproduces the README's figures, and says whether a change made things slower or only added tests.

For each commit (a git worktree of it under a temp dir, run with PYTHONPATH pointing there, so both use
this venv), in the parts chosen with --parts:
- quickstart: `ablate run search_spaces/quickstart.yaml` from a temp working dir of its own, with its own
  MLflow store, Ray storage and an empty ABLATE_CACHE_DIR (neither commit profits from the other's cache):
  wall time, and the ranked table it prints, kept so a reader sees the two agree within seed noise;
- resume: `pytest -k resume` in the worktree: wall time, and each test's time from a junit xml file;
- suite: the whole `pytest` in the worktree: wall time, each test's time, passed/failed/skipped.
- make: the commit's own `make test` in the worktree, as its README runs the suite (a commit with tiers runs
  them as separate pytest sessions, with xdist; one without runs one `pytest`), on this venv (never
  reinstalled into): the same figures, from one junit report per session (`junit_each.py`).

For resume, suite and make, tests are matched by nodeid (classname::name), and the wall-time difference is split
into tests added, tests removed, common tests that got slower or faster, and the rest (collection, start-up,
session fixtures). Rounds alternate the order of the commits, so load that drifts falls on both alike; the
figures are medians over rounds. The load average before each timed run is printed and kept. Commits are
measured, not the uncommitted working tree.

    .venv/bin/python benchmarks/regress.py --before HEAD~3 [--after HEAD] [--rounds 1]
        [--parts quickstart,resume,suite] [--pytest-args "tests/test_spec.py"]

--pytest-args go to both pytest runs; paths in them replace the default `tests/`. The whole suite takes
~18 min per commit on 2 cores, the quickstart a few minutes; --pytest-args do not apply to make. Writes
benchmarks/results/regress.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree

from light_core import ROOT, worktree  # benchmarks/, the script's own folder
from results_file import publish

HERE = Path(__file__).resolve().parent  # where junit_each.py is
PARTS = ("quickstart", "resume", "suite", "make")
OUTCOMES = ("passed", "failed", "error", "skipped")
TAGS = {"failure": "failed", "error": "error", "skipped": "skipped"}  # a junit testcase's child: its outcome
TOP = 15
Done = subprocess.CompletedProcess


def parse_junit(xml: str) -> dict[str, dict]:
    """Each test case of a junit xml report by nodeid (classname::name): its seconds and its outcome."""
    tests = {}
    for case in ElementTree.fromstring(xml).iter("testcase"):
        # A test that failed and then errored in teardown counts once, as failed.
        outcome = next((o for tag, o in TAGS.items() if case.find(tag) is not None), "passed")
        tests[f"{case.get('classname', '')}::{case.get('name', '')}"] = {"seconds": float(case.get("time") or 0),
                                                                          "outcome": outcome}
    return tests


def compare(before: dict[str, float], after: dict[str, float], wall_before: float, wall_after: float,
            top: int = TOP) -> dict:
    """Split the wall-time difference (after - before) into what tests added, removed, and common tests
    that got slower or faster explain; "rest" is what no test's own time explains."""
    growth = {t: after[t] - before[t] for t in before.keys() & after.keys()}
    common = sorted(growth, key=lambda t: (-abs(growth[t]), t))
    added = {t: round(after[t], 3) for t in sorted(after.keys() - before.keys())}
    removed = {t: round(before[t], 3) for t in sorted(before.keys() - after.keys())}
    explained = {"added": sum(added.values()), "removed": -sum(removed.values()),
                 "common slower": sum(g for g in growth.values() if g > 0),
                 "common faster": sum(g for g in growth.values() if g < 0)}
    difference = wall_after - wall_before
    explained["rest"] = difference - sum(explained.values())
    return {"difference": round(difference, 3), "explained": {k: round(v, 3) for k, v in explained.items()},
            "counts": {"common": len(common), "added": len(added), "removed": len(removed),
                       "common slower": sum(g > 0 for g in growth.values()),
                       "common faster": sum(g < 0 for g in growth.values())},
            "top_common": [{"test": t, "before": round(before[t], 3), "after": round(after[t], 3),
                            "ratio": round(after[t] / before[t], 2) if before[t] else None,
                            "growth": round(growth[t], 3)} for t in common[:top]],
            "added": added, "removed": removed}


def timed(label: str, command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, list[float], Done]:
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"{label}: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min)", flush=True)
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    print(f"{label}: {seconds:.1f} s, exit {done.returncode}", flush=True)
    return seconds, load, done


def ranked_table(output: str) -> list[str]:
    """The ranking `ablate run` ends with, without the MLflow run id and paths printed after it."""
    lines = output.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if "ranked by" in line]
    if not starts:
        return lines[-20:]
    table = lines[starts[-1]:]
    ends = [i for i, line in enumerate(table) if line.startswith("MLflow:")]
    return table[:ends[0]] if ends else table


def quickstart(tree: Path, tmp: Path, label: str) -> dict:
    work = Path(tempfile.mkdtemp(dir=tmp, prefix="quickstart-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    # MLFLOW_TRACKING_URI as well, for a commit whose `run` has no --tracking-uri; COLUMNS keeps the help
    # from truncating option names and the table the same width for both.
    env = {**os.environ, "PYTHONPATH": str(tree), "ABLATE_CACHE_DIR": str(work / "cache"),
           "MLFLOW_TRACKING_URI": uri, "COLUMNS": "200"}
    cli = [sys.executable, "-m", "ablation.cli", "run"]
    helped = subprocess.run([*cli, "--help"], cwd=work, env=env, capture_output=True, text=True)
    options = set(re.findall(r"--[a-z][a-z-]*", helped.stdout))
    command = [*cli, str(tree / "search_spaces" / "quickstart.yaml")]
    if "--tracking-uri" in options:
        command += ["--tracking-uri", uri]
    if "--storage" in options:
        command += ["--storage", str(work / "runs")]
    seconds, load, done = timed(label, command, work, env | {"COLUMNS": "120"})
    if done.returncode:
        print(f"{label} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}", flush=True)
    table = ranked_table(done.stdout) if not done.returncode else (done.stdout + done.stderr).splitlines()[-20:]
    # The command as a reader can retype it: without this run's temp paths.
    shown = shlex.join(command[2:]).replace(str(work), "<tmp>").replace(str(tree), "<worktree>")
    return {"seconds": seconds, "load": load, "returncode": done.returncode, "command": shown,
            "table": table}


def pytest_run(tree: Path, tmp: Path, label: str, args: list[str]) -> dict:
    xml = Path(tempfile.mkdtemp(dir=tmp, prefix="junit-")) / "junit.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *args]
    seconds, load, done = timed(label, command, tree, {**os.environ, "PYTHONPATH": str(tree)})
    # 1 is "some tests failed" and 5 "none selected": both still a measurement; anything else left no report.
    if done.returncode not in (0, 1, 5):
        raise RuntimeError(f"{label}: {shlex.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")
    return figures(seconds, load, done, parse_junit(xml.read_text()))


def figures(seconds: float, load: list[float], done: Done, tests: dict[str, dict]) -> dict:
    """A timed pytest run's figures: its wall time, load and exit, its outcomes counted, each test's time."""
    counts = Counter(t["outcome"] for t in tests.values())
    return {"seconds": seconds, "load": load, "returncode": done.returncode,
            "counts": {o: counts[o] for o in OUTCOMES}, "tests": {t: v["seconds"] for t, v in tests.items()}}


def make_test(tree: Path, tmp: Path, label: str) -> dict:
    """The commit's own `make test`, run on this venv: `-o` tells make its install stamp is up to date, so
    the worktree's newer pyproject.toml never reinstalls the venv (which would point it at the worktree)."""
    reports = Path(tempfile.mkdtemp(dir=tmp, prefix="junit-"))
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(HERE)]), "JUNIT_EACH_DIR": str(reports),
           "PYTEST_ADDOPTS": "-p junit_each -p no:cacheprovider"}
    seconds, load, done = timed(label, ["make", "test", f"VENV={venv}", "-o", f"{venv}/.installed"], tree, env)
    sessions = sorted(reports.glob("*.xml"))
    if not sessions:
        raise RuntimeError(f"{label}: make test exited {done.returncode} and left no report:\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")
    tests = {}
    for xml in sessions:
        tests |= parse_junit(xml.read_text())
    return figures(seconds, load, done, tests) | {"sessions": len(sessions)}


def measure(tree: Path, tmp: Path, name: str, parts: list[str], pytest_args: list[str]) -> dict:
    # Without a path in --pytest-args, the worktree's own testpaths (tests/) apply, as from the repo root.
    selections = {"resume": ["-k", "resume", *pytest_args], "suite": pytest_args}
    runs = {"quickstart": lambda label: quickstart(tree, tmp, label), "make": lambda label: make_test(tree, tmp, label)}
    return {part: runs[part](f"{name} {part}") if part in runs
            else pytest_run(tree, tmp, f"{name} {part}", selections[part]) for part in parts}


def check_code(trees: dict[str, Path], tmp: Path) -> None:
    """Both commits' code, not the venv's editable install of the repo, is what gets imported."""
    for tree in trees.values():
        done = subprocess.run([sys.executable, "-c", "import ablation; print(ablation.__file__)"], cwd=tmp, text=True,
                              env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, check=True)
        if not Path(done.stdout.strip()).is_relative_to(tree):
            raise RuntimeError(f"PYTHONPATH={tree} imports {done.stdout.strip()}")


def summarise(commits: dict[str, str], rounds: dict[str, list[dict]], parts: list[str], pytest_args: list[str]):
    walls = {name: {p: round(statistics.median(r[p]["seconds"] for r in rows), 3) for p in parts}
             for name, rows in rounds.items()}
    comparisons = {}
    for part in (p for p in parts if p != "quickstart"):
        times = {}
        for name, rows in rounds.items():
            names = set().union(*(r[part]["tests"] for r in rows))
            times[name] = {t: statistics.median(r[part]["tests"][t] for r in rows if t in r[part]["tests"])
                           for t in names}
        comparisons[part] = compare(times["before"], times["after"], walls["before"][part], walls["after"][part])
    # Every test's time in every round would swell the JSON; the comparison keeps what a reader needs.
    for rows in rounds.values():
        for r in rows:
            for figures in r.values():
                figures.pop("tests", None)
    n = len(rounds["after"])
    lines = [f"# Two commits side by side: {commits['before']} (before) and {commits['after']} (after)", "",
             f"{n} round{'s' * (n > 1)}, alternating the order, on {os.cpu_count()} cores; medians."
             + (f" pytest args: `{shlex.join(pytest_args)}`." if pytest_args else ""), "",
             "| | before | after | after / before | load (1 min) before each run: before; after |",
             "|---|---|---|---|---|"]
    for part in parts:
        b, a = walls["before"][part], walls["after"][part]
        loads = "; ".join(", ".join(f"{r[part]['load'][0]:.2f}" for r in rounds[name]) for name in ("before", "after"))
        lines.append(f"| {part} (s) | {b:.1f} | {a:.1f} | {a / b:.2f} | {loads} |")
        if part != "quickstart":
            counts = {name: rounds[name][-1][part]["counts"] for name in rounds}
            shown = {name: " / ".join(str(counts[name][o]) for o in OUTCOMES) for name in counts}
            lines.append(f"| {part}: {' / '.join(OUTCOMES)} | {shown['before']} | {shown['after']} | | |")
    for part, c in comparisons.items():
        if not c["counts"]["common"] + c["counts"]["added"] + c["counts"]["removed"]:
            lines += ["", f"## {part}: no tests selected in either commit"]
            continue
        share = lambda s: f"{100 * s / c['difference']:.0f} %" if abs(c["difference"]) >= 1 else "-"  # noqa: E731
        lines += ["", f"## {part}: where the {c['difference']:+.1f} s of wall time went", "",
                  "| | tests | seconds | share of the difference |", "|---|---|---|---|"]
        for key, seconds in c["explained"].items():
            lines.append(f"| {key} | {c['counts'].get(key, '')} | {seconds:+.1f} | {share(seconds)} |")
        lines += ["", f"Common tests by growth, top {TOP}:", "",
                  "| test | before (s) | after (s) | after / before | growth (s) |", "|---|---|---|---|---|"]
        for t in c["top_common"]:
            ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}"
            lines.append(f"| `{t['test']}` | {t['before']:.2f} | {t['after']:.2f} | {ratio} | {t['growth']:+.2f} |")
    if "quickstart" in parts:
        for name, rows in rounds.items():
            lines += ["", f"## quickstart's ranking, {name} ({commits[name]}), last round", "",
                      f"`{rows[-1]['quickstart']['command']}`", "", "```", *rows[-1]["quickstart"]["table"], "```"]
    result = {"commits": commits, "rounds": n, "cpus": os.cpu_count(), "parts": parts, "pytest_args": pytest_args,
              "medians": walls, "comparisons": comparisons, "raw": rounds}
    publish("regress", result, lines)


def remove(trees: dict[str, Path]) -> None:
    for tree in trees.values():
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    # Should a removal fail, the temp dir goes anyway: prune drops git's record of the vanished worktree.
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit before (e.g. HEAD~3)")
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--pytest-args", default="", help='extra pytest args for resume and suite, e.g. '
                        '"tests/test_spec.py"; one that starts with "-" as --pytest-args="-m \'not slow\'"')
    args = parser.parse_args()
    parts = [p for p in PARTS if p in args.parts.split(",")]
    if unknown := set(args.parts.split(",")) - set(PARTS):
        parser.error(f"unknown parts {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    pytest_args = shlex.split(args.pytest_args)
    commits = {}
    for name in ("before", "after"):
        commits[name] = subprocess.run(["git", "rev-parse", "--short", getattr(args, name)], cwd=ROOT, check=True,
                                       capture_output=True, text=True).stdout.strip()
    rounds: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="regress-") as folder:
        tmp = Path(folder)
        trees: dict[str, Path] = {}
        try:  # filled one by one, so a second `worktree add` that fails still lets the first be removed
            for name, commit in commits.items():
                trees[name] = worktree(commit, tmp / name)
            check_code(trees, tmp)
            for r in range(args.rounds):
                for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
                    rounds[name].append(measure(trees[name], tmp, f"round {r + 1} {name}", parts, pytest_args))
        finally:
            remove(trees)
    summarise(commits, rounds, parts, pytest_args)


if __name__ == "__main__":
    main()
