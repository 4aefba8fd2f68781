"""The files `ablate report` writes and the figures it draws: a tidy numeric report.csv, report.tex in
booktabs tables that typeset on a paper's page, report.md that shows a cell's text as text, report.html
as a browser draws it, the placement heatmap, and figures whose names neither warn nor overlap."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ablation.core.emotions import EMOTIONS
from ablation.report.files import placement_grid, tidy
from ablation.report.model import Arm, StudyReport
from reported_studies import log_known_study, made_arm, made_report


def test_report_csv_is_tidy_one_numeric_row_per_configuration_and_metric():
    arms = [made_arm("layer3.2+layer4", {"test_macro_f1": {0: 0.80, 1: 0.95}, "test_f1_happy": {0: 0.9}},
                     costs={"params_total": 11_180_000.0, "macs": 1.82e9, "latency_ms": 12.5}),
            made_arm("none", {"test_macro_f1": {0: 0.7, 1: 0.71, 2: 0.72}}),
            Arm("layer1", {"model.placement": "layer1"})]  # planned, never started
    from ablation.report.model import _comparisons

    by_name = {a.name: a for a in arms}
    report = StudyReport("unit", "val_macro_f1", by_name, "none", None,
                         _comparisons(by_name, "none", ("test_macro_f1",), None, []), {}, {})
    header, rows = tidy(report)
    assert header[:9] == ["rank", "configuration", "model.placement", "metric", "mean", "low", "high", "n", "clipped"]
    assert header[9:] == ["kind", "against", "p", "p_holm", "answer", "decided_at", "effect", "estimate", "se",
                          "aliases", "method"]
    by = {(r[1], r[3]): dict(zip(header, r)) for r in rows if r[header.index("kind")] in ("score", "cost")}
    f1 = by[("layer3.2+layer4", "test_macro_f1")]
    assert (f1["rank"], float(f1["mean"]), float(f1["high"]), f1["n"], f1["clipped"]) == (1, 0.875, 1.0, 2, True)
    assert by[("layer3.2+layer4", "test_f1_happy")]["low"] == ""  # one seed: no interval, not a string
    assert float(by[("layer3.2+layer4", "params_total")]["mean"]) == 11_180_000
    assert float(by[("layer3.2+layer4", "macs")]["mean"]) == 1.82e9
    assert by[("layer1", "test_macro_f1")]["n"] == 0
    for row in rows:
        for column in ("mean", "low", "high", "p", "p_holm"):
            value = row[header.index(column)]
            assert value == "" or math.isfinite(float(value)), row  # numbers only: no "±", no "M"
    # The paired differences from the baseline, as the report's comparison table gives them.
    [c] = report.comparisons["test_macro_f1"]
    [difference] = [dict(zip(header, r)) for r in rows if r[header.index("kind")] == "difference"]
    assert (difference["configuration"], difference["against"], difference["n"]) == ("layer3.2+layer4", "none", 2)
    assert float(difference["mean"]) == pytest.approx(c.difference.mean) == pytest.approx(0.875 - 0.705)
    assert float(difference["p_holm"]) == pytest.approx(c.p_holm) and float(difference["p"]) == pytest.approx(c.p_t)


def test_report_tex_holds_booktabs_tables_1_and_2_with_escaped_names(tmp_path):
    from ablation.report.paper import escape, latex

    assert escape("cbam_r16 & 5% $x#{y}") == r"cbam\_r16 \& 5\% \$x\#\{y\}"
    classes = {f"test_f1_{c}": {0: 0.8, 1: 0.9} for c in EMOTIONS}
    arms = [made_arm("placement=layer3.2+layer4_r&d", {"test_macro_f1": {0: 0.80, 1: 0.82},
                                                       "test_accuracy": {0: 0.81, 1: 0.83}, **classes},
                     costs={"params_total": 11_180_000.0, "macs": 1.82e9}),
            made_arm("placement=none", {"test_macro_f1": {0: 0.7}, "test_accuracy": {0: 0.72}})]
    tex = latex(made_report(*arms))
    assert tex.count("\\toprule") == 2 and tex.count("\\bottomrule") == 2
    # Seven intervals span the page in 8 pt, rather than shrink to 5 pt in one column; two stay in one.
    assert tex.count("\\begin{table*}") == tex.count("\\end{table*}") == 1 and tex.count("\\begin{table}") == 1
    assert "\\footnotesize\\setlength{\\tabcolsep}{4pt}" in tex
    assert "placement=layer3.2+layer4\\_r\\&d & 2 &" in tex and "placement=layer3.2+layer4_r&d" not in tex
    assert "Configuration & $n$ & Happy & Anger & Unrest & Wound & Sad & Neutral & Macro-F1 \\\\" in tex
    assert "0.810 $\\pm$ 0.127" in tex  # macro-F1: mean and the t interval's half-width on two seeds
    assert "82.00 $\\pm$ 12.71" in tex  # accuracy, in %
    assert "0.850\\,[0.215, 1.000]$^{\\dagger}$" in tex and "interval clipped to the metric's range" in tex
    assert "placement=none & 1 & 72.00 & 0.700 & -- & -- \\\\" in tex  # one seed: its mean; no cost logged
    assert "11.18 & 1.82" in tex and "GMACs" in tex
    small = latex(made_report(made_arm("placement=layer4", {"test_macro_f1": {0: 0.8}, "test_accuracy": {0: 0.8}},
                                       costs={"params_total": 11.49e6, "macs": 37.36e6})))
    assert "MMACs" in small and "& 37.36 \\\\" in small  # not 0.04 GMACs for every small model
    assert tex.count("{") == tex.count("}")
    compiles(tex, tmp_path)


def compiles(tex: str, folder: Path) -> None:
    """`tex` typeset on a two-column paper page (`\\documentclass[twocolumn]{article}`, booktabs), with no
    overfull box in the log, where a LaTeX is installed (CI's machines may have none)."""
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        return
    (folder / "report.tex").write_text(tex)
    (folder / "paper.tex").write_text("\\documentclass[twocolumn]{article}\n\\usepackage{booktabs,graphicx}\n"
                                      "\\begin{document}\n\\input{report.tex}\n\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (folder / "paper.pdf").stat().st_size > 1000
    log = (folder / "paper.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log, log[log.find("Overfull"):][:600]


def test_the_heatmap_gives_block_sites_a_column_of_their_own():
    placements = {"a": "layer3.2", "b": "layer3", "c": "layer3.2+layer4", "d": "all", "e": "none"}
    means = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4, "e": 0.5}
    values, columns = placement_grid(placements, means)
    assert columns == ["layer1", "layer2", "layer3", "layer3.2", "layer4", "none"]
    assert values[("a", "layer3.2")] == 0.1 and ("a", "layer3") not in values
    assert {c for (arm, c) in values if arm == "c"} == {"layer3.2", "layer4"}
    assert {c for (arm, c) in values if arm == "d"} == {"layer1", "layer2", "layer3", "layer4"}
    assert values[("e", "none")] == 0.5


def test_the_figures_of_configurations_with_long_names_are_drawn_without_a_layout_warning(tmp_path):
    """A configuration's name is written beside its point and in legends beside the axes. Fitted into the
    figure (`tight_layout`), a long one squeezed the axes until matplotlib gave up and warned on the
    terminal of `ablate report`; the figures now grow to hold the names instead."""
    import warnings

    from ablation.report import figures
    from ablation.report.files import draw

    names = [f"model.attention=identity_cbam,model.placement=layer{i}.1+layer4,model.reduction=16,train.lr=0.01"
             for i in range(1, 5)]
    arms = [made_arm(name, {"test_macro_f1": {0: 0.7 + i / 50, 1: 0.72 + i / 50},
                            **{f"test_f1_{c}": {0: 0.6, 1: 0.7} for c in EMOTIONS}},
                     costs={"params_total": 11e6 + i * 1e5, "macs": 1.8e9 + i * 1e7, "latency_ms": 12.0 + i},
                     levels={"model.placement": f"layer{i + 1}.1+layer4"})
            for i, name in enumerate(names)]
    report = made_report(*arms)
    report.curves = {name: {1: 0.5, 2: 0.6} for name in names}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drawn = [p.path for p in draw(report, tmp_path)]
        drawn.append(figures.race_intervals({name: {2: (-0.1, 0.1), 3: (-0.05, 0.06)} for name in names}, margin=0.01,
                                            baseline=names[0], metric="macro-F1", path=tmp_path / "race.png"))
    assert [str(w.message) for w in caught] == []
    # Placements of two sites each: the grid of the sites they hold.
    assert {p.name for p in drawn} == {"heatmap.png", "score_vs_cost.png", "per_class_f1.png",
                                       "learning_curves.png", "race.png"}
    for picture in drawn:
        with Image.open(picture) as image:
            assert np.asarray(image.convert("L")).std() > 5  # drawn, not blank


def test_the_html_report_renders_in_a_headless_browser(tmp_path):
    """The report as a person opens it: headless Chromium draws report.html, and the picture is not blank."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "report_render.py"
    loaded = importlib.util.spec_from_file_location("report_render", path)
    render = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(render)
    browser = render.find_browser()
    if browser is None:
        pytest.skip(f"no headless browser on PATH (looked for {', '.join(render.BROWSERS)}); "
                    "Debian: apt-get install chromium")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_known_study(uri)
    from ablation.report.make import make_report

    make_report(uri, "known", tmp_path / "report")
    figures = render.measure(render.render(tmp_path / "report" / "report.html", tmp_path / "page.png", browser))
    assert render.blank(figures) is None, figures
    # The check can fail: the same page with its pictures broken is caught.
    html = (tmp_path / "report" / "report.html").read_text()
    (tmp_path / "broken.html").write_text(re.sub(r'base64,[^"]+', "base64,AAAA", html))
    broken = render.measure(render.render(tmp_path / "broken.html", tmp_path / "broken.png", browser))
    assert "the plots did not draw" in render.blank(broken), broken


def test_report_md_shows_what_a_cell_holds_without_running_html_or_adding_columns():
    """Markdown passes raw HTML through to the page, and a pipe in a cell starts another column."""
    from ablation.report.table import Table

    md = Table("arms <b>", ["configuration", "value"], [["<img src=x onerror=alert(1)>", "1|2"]],
               note="a & b").markdown()
    assert "<img" not in md and "<b>" not in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    row = md.splitlines()[4]
    assert len(re.split(r"(?<!\\)\|", row)[1:-1]) == 2  # the escaped pipe stays inside its cell


def test_no_two_names_in_a_cost_panel_are_drawn_over_each_other(tmp_path, monkeypatch):
    """The walkthrough's two-seed quickstart drew `placement=layer1` over `placement=layer4` in the latency
    panel: overlaps were judged before the constrained layout narrowed the panels, so names that only the
    layout brought together were never moved. Its figure, redrawn from that report's numbers."""
    from ablation.report import figures

    scores = {"placement=layer4": (0.7875, 0.7172, 0.8579), "placement=layer1": (0.7831, 0.6629, 0.9033),
              "placement=layer3": (0.7712, 0.5994, 0.943), "placement=none": (0.7693, 0.6777, 0.8608),
              "placement=all": (0.7688, 0.6524, 0.8853), "placement=layer2": (0.7658, 0.5555, 0.9761)}
    order = list(scores)
    costs = {"MMACs": dict(zip(order, [99.14, 98.60, 98.60, 97.96, 101.06, 98.59])),
             "parameters (M)": dict(zip(order, [11.49, 11.185, 11.26, 11.18, 11.60, 11.20])),
             "latency (ms)": dict(zip(order, [15.99, 15.06, 20.43, 14.28, 22.68, 16.53]))}
    front = ["placement=none", "placement=layer1", "placement=layer4"]
    drawn, save = {}, figures._save

    def keep(figure, path, beside=()):  # where each panel's names are as the figure is saved (laid out)
        figure.draw_without_rendering()
        renderer = figure.canvas.get_renderer()
        drawn.update({ax.get_xlabel(): [t.get_window_extent(renderer) for t in ax.texts if t.get_text()]
                      for ax in figure.axes})
        return save(figure, path, beside)

    monkeypatch.setattr(figures, "_save", keep)
    figures.cost_scatter(scores, costs, score_label="test macro-F1", fronts={axis: front for axis in costs},
                         path=tmp_path / "score_vs_cost.png")
    assert set(drawn) == set(costs)
    for axis, boxes in drawn.items():
        assert len(boxes) == len(scores)
        overlapping = [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes) if i < j and a.overlaps(b)]
        assert not overlapping, (axis, overlapping)
