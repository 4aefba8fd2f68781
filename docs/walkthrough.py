"""Walk the README's five-minute tour as a new user would, and keep what each step printed and drew.

    make install && .venv/bin/python docs/walkthrough.py      # about 15 minutes on 2 cores

The commands are read from the README itself (its tour's `ablate ...` lines that act on the quickstart
study, and `ablate ui`), so the walkthrough cannot drift from what the README tells people to type. Each
runs in a scratch folder with this checkout's `ablate`, 80 columns wide and without a terminal, as
`ablate ... | tee` would see it. The script writes docs/walkthrough.md (each command, how long it took,
what it printed) and three pictures in docs/walkthrough/: the report's html page, the study in the MLflow
UI as `ablate ui`'s link opens it, and report.tex typeset on a two-column paper page.

Needs chromium for the pictures and pdflatex and pdftoppm for the paper page (Debian: `apt-get install
chromium poppler-utils texlive-latex-extra`); a picture whose tool is missing is left out and said so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshot import free_port, shoot  # noqa: E402  (docs/ is not a package)

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def tour_commands(readme: str) -> list[list[str]]:
    """The README tour's `ablate` commands on the quickstart study, and `ablate ui`, in the README's order."""
    section = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["ablate"] and ("quickstart" in words or words[1:2] == ["ui"]):
                commands.append(words[1:])
    return commands


class Tour:
    """Runs commands in `work` and keeps what each printed, with the scratch folder's path said as `~/tour`."""

    def __init__(self, ablate: Path, work: Path, pictures: Path):
        self.ablate, self.work, self.pictures = ablate, work, pictures
        self.env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
        self.steps: list[tuple[str, float, str]] = []  # (command, seconds, output)
        self.missing: list[str] = []

    def _clean(self, text: str) -> str:
        return ANSI.sub("", text).replace(str(self.work), "~/tour").rstrip()

    def run(self, args: list[str]) -> str:
        shown = shlex.join(["ablate", *args])
        print(f"$ {shown}", flush=True)
        started = time.monotonic()
        done = subprocess.run([str(self.ablate), *args], cwd=self.work, env=self.env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = self._clean(done.stdout)
        if done.returncode != 0:
            raise SystemExit(f"`{shown}` failed with exit status {done.returncode}:\n{output[-3000:]}")
        self.steps.append((shown, time.monotonic() - started, output))
        return output

    def ui(self, args: list[str]) -> None:
        """`ablate ui` until it prints the study's link; the link opened in a browser and photographed."""
        args = [*args, "--port", str(free_port())]
        shown = shlex.join(["ablate", *args[:-2]])
        print(f"$ {shown}", flush=True)
        started = time.monotonic()
        server = subprocess.Popen([str(self.ablate), *args], cwd=self.work, env=self.env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lines: list[str] = []
        try:
            for line in server.stdout:  # the link comes once the server answers
                lines.append(line)
                if "viewStateShareKey" in line:
                    break
            link = re.search(r"http://\S+", lines[-1] if lines else "")
            if link is None:
                raise SystemExit(f"`{shown}` printed no study link:\n{''.join(lines)[-3000:]}")
            self.steps.append((shown, time.monotonic() - started, self._clean("".join(lines))))
            self.picture("mlflow_study.png", "the MLflow UI", lambda png: shoot(
                link.group(0), png, width=1800, height=1120))
            # The study's parent run, and a trial's system metrics, each on its own page of the same UI.
            base, experiment = link.group(0).split("/#/")[0], re.search(r"experiments/(\d+)", link.group(0)).group(1)
            parent = re.search(r"parent run ([0-9a-f]{32})", "".join(out for _, _, out in self.steps))
            trials = json.loads(subprocess.run([str(self.ablate), "runs", "quickstart", "--json"], cwd=self.work,
                                               env=self.env, capture_output=True, text=True).stdout or "[]")
            page = f"{base}/#/experiments/{experiment}/runs/%s?workflowType=machine_learning"
            if parent:
                self.picture("mlflow_parent_run.png", "the parent run's page", lambda png: shoot(
                    page % parent.group(1), png, width=1600, height=1300, selector="h2"))
            if trials:
                self.picture("mlflow_system_metrics.png", "a trial's system metrics", lambda png: shoot(
                    page % f"{trials[0]['run_id']}/system-metrics", png, selector="svg.main-svg"))
        finally:
            server.terminate()
            server.wait(timeout=60)

    def picture(self, name: str, what: str, take) -> None:
        try:
            if not take(self.pictures / name):
                self.missing.append(f"{what}: the page never rendered")
        except (SystemExit, OSError, RuntimeError, TimeoutError) as error:
            self.missing.append(f"{what}: {error}")
        else:
            print(f"  wrote {self.pictures / name}", flush=True)


def paper_page(report: Path, png: Path) -> int:
    """report.tex inside a two-column article, typeset, its first page saved as `png`."""
    for tool in ("pdflatex", "pdftoppm"):
        if shutil.which(tool) is None:
            raise SystemExit(f"no {tool} on PATH")
    (report / "paper.tex").write_text("\\documentclass[twocolumn]{article}\n\\usepackage{booktabs,graphicx}\n"
                                      "\\begin{document}\n\\input{report.tex}\n\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=report,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"pdflatex failed: {done.stdout[-2000:]}")
    subprocess.run(["pdftoppm", "-png", "-r", "110", "-f", "1", "-l", "1", "-singlefile", "paper.pdf",
                    str(png.with_suffix("").resolve())], cwd=report, check=True, timeout=120)
    overfull = (report / "paper.log").read_text(errors="replace").count("Overfull \\hbox")
    if overfull:
        raise RuntimeError(f"{overfull} overfull box(es) in paper.log")
    return 1


def markdown(tour: Tour, commit: str, took: float) -> str:
    lines = ["# The README's tour, as it ran", "",
             "<!-- written by docs/walkthrough.py; run it again rather than editing this page -->", "",
             f"`docs/walkthrough.py` ran each command of the [README](../README.md)'s five-minute tour, as the "
             f"README gives it, in an empty folder (`~/tour`) with a checkout of commit `{commit}`, on "
             f"{date.today().isoformat()}, {os.cpu_count()} CPU cores, no GPU. Output is as `ablate ... | tee` "
             f"shows it: 80 columns, no terminal, so the live view prints a plain line per event. "
             f"The whole tour took {took / 60:.0f} min.", ""]
    for shown, seconds, output in tour.steps:
        lines += [f"## `{shown}`", "", f"{seconds:.1f} s.", "", "```text", output, "```", ""]
    lines += ["## The pictures", "",
              "The report's html page (`reports/quickstart/report.html`), as Chromium draws it:", "",
              "![report.html of the two-seed quickstart](walkthrough/report_html.png)", "",
              "Its cost figure (`score_vs_cost.png`), which the README shows:", "",
              "![test macro-F1 against MACs, parameters and latency](walkthrough/score_vs_cost.png)", "",
              "The study in the MLflow UI, as `ablate ui`'s link opens it:", "",
              "![the quickstart study in the MLflow UI](walkthrough/mlflow_study.png)", "",
              "The study's parent run, and the system metrics of one of its trials:", "",
              "![the parent run's page](walkthrough/mlflow_parent_run.png)", "",
              "![a trial's system metrics](walkthrough/mlflow_system_metrics.png)", "",
              "`report.tex` inside `\\documentclass[twocolumn]{article}` with booktabs, typeset by pdflatex "
              "(no overfull box), its first page:", "",
              "![report.tex on a two-column page](walkthrough/report_tex.png)", "",
              "The first of `ablate explain`'s figures, one image through each run it explained:", "",
              "![Guided Backprop, Grad-CAM and Guided Grad-CAM](walkthrough/explain.png)", ""]
    if tour.missing:
        lines += ["Not drawn this time: " + "; ".join(tour.missing) + ".", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="the scratch folder (default: a new temporary one)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where walkthrough.md and walkthrough/ go")
    args = parser.parse_args()
    ablate = Path(sys.executable).parent / "ablate"
    if not ablate.exists():
        raise SystemExit(f"no {ablate}: run `make install` first")
    work = args.work or Path(tempfile.mkdtemp(prefix="ablate_tour_"))
    work.mkdir(parents=True, exist_ok=True)
    pictures = args.out / "walkthrough"
    pictures.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    tour, started = Tour(ablate, work, pictures), time.monotonic()
    for command in tour_commands((ROOT / "README.md").read_text()):
        if command[0] == "ui":
            tour.ui(command)
        else:
            tour.run(command)
            if command[0] == "report":
                report = work / "reports" / "quickstart"
                tour.picture("report_html.png", "report.html", lambda png: shoot(
                    report.resolve().joinpath("report.html").as_uri(), png, width=1280, height=900,
                    selector="img", full_page=True))
                tour.picture("report_tex.png", "the LaTeX page", lambda png: paper_page(report, png))
                tour.picture("score_vs_cost.png", "the report's cost figure", lambda png: shutil.copy(
                    report / "score_vs_cost.png", png))
            if command[0] == "explain":  # its first figure, as the command drew it
                drawn = sorted((work / "explain").glob("*.png"))
                tour.picture("explain.png", "explain's figure", lambda png: drawn and shutil.copy(drawn[0], png))
    (args.out / "walkthrough.md").write_text(markdown(tour, commit, time.monotonic() - started))
    print(f"wrote {args.out / 'walkthrough.md'}" + (f"; not drawn: {'; '.join(tour.missing)}" if tour.missing else ""))


if __name__ == "__main__":
    main()
