"""`ablate report` on a factorial study: the effects model leads the report in every format (terminal,
report.md, .html, .csv, .tex), with the design, the aliases in the spec's words, the sentences and the
half-normal plot; the numbers are `stats.effects.fit`'s on the same trials. Studies are logged to a
SQLite store as `ablate run` logs them (no Ray), with known effects planted in their scores."""

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ablation import tracking
from ablation.cli.main import app
from ablation.core import Study, StudySpec, load_study
from ablation.stats.effects import Observation, fit

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
STAGE_EFFECTS = SPACES / "stage_effects.yaml"
LAYER3 = 0.05  # a module at layer3 raises best validation macro-F1 by this much; no other stage does anything


def planted(study: Study) -> dict[str, float]:
    """Each trial's best-epoch val_macro_f1: 0.60, +LAYER3 with layer3 on, a shift per seed (a seed moves
    every arm alike) and a little noise of its own."""
    rng = np.random.default_rng(25)
    shift = {seed: rng.normal(0, 0.01) for seed in study.spec.search.seeds}
    return {t.id: 0.60 + LAYER3 * t.overrides["model.placement.layer3"] + shift[t.seed] + rng.normal(0, 0.004)
            for t in study.every_trial}


def log_study(uri: str, study: Study, values: dict[str, float], *, failed: set[str] = frozenset(),
              diverged: set[str] = frozenset()) -> None:
    """`study` as `ablate run` logs it: the parent run with its spec.yaml and tags, a run per trial with its
    params (strings, as MLflow keeps them) and its best-epoch and test scores; `failed` and `diverged`
    trial ids end without them."""
    spec = study.spec
    experiment_id, parent = tracking.open_study(
        uri, spec.name, params=tracking.study_params(spec, study.arms) | {"search.seeds": spec.search.seeds},
        spec_yaml=yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    parent.set_tags({"ablate.axes": ",".join(study.axes), "ablate.design": spec.search.design,
                     "ablate.metric": spec.metric, "ablate.mode": spec.mode})
    for trial in study.every_trial:
        run = tracking.open_trial(uri, experiment_id, parent.run_id, name=trial.name, trial_id=trial.id,
                                  params=trial.params()).run
        run.log_params(trial.params())
        if trial.id in failed | diverged:
            run.set_tags({"ablate.failure": "divergence" if trial.id in diverged else "error"})
            run.finish("FAILED")
            continue
        value = values[trial.id]
        run.log_metrics({"val_macro_f1": value}, step=1)
        run.log_metrics({"best_val_macro_f1": value, "test_accuracy": value, "test_macro_f1": value - 0.01})
        run.finish("FINISHED")
    tracking.finish_study(parent, failed=len(failed), diverged=len(diverged), unfinished=0)


def expected_fit(study: Study, values: dict[str, float], left_out: set[str] = frozenset()):
    """`stats.effects.fit` of the same trials, coded from the design (names as the report's table gives
    them: `model.` dropped)."""
    observations = [Observation({k.removeprefix("model."): x for k, x in study.factorial.code(t.overrides).items()},
                                t.seed, values[t.id]) for t in study.every_trial if t.id not in left_out]
    return fit(observations, factors=[k.removeprefix("model.") for k in study.factorial.factors])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store, four studies: the fraction of stage_effects.yaml with 3 seeds (one trial failed, one
    diverged), the same with one seed, one seed with five of eight trials failed, and a grid."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    three = load_study(STAGE_EFFECTS, data_on_disk=False)
    lost = {three.every_trial[5].id: "failed", three.every_trial[17].id: "diverged"}
    log_study(uri, three, planted(three), failed={i for i, w in lost.items() if w == "failed"},
              diverged={i for i, w in lost.items() if w == "diverged"})
    one = load_study(STAGE_EFFECTS, ["name=stage_effects_one_seed", "search.seeds=[0]"], data_on_disk=False)
    log_study(uri, one, planted(one))
    few = load_study(STAGE_EFFECTS, ["name=stage_effects_few", "search.seeds=[0]"], data_on_disk=False)
    log_study(uri, few, planted(few), failed={t.id for t in few.every_trial[:5]})
    grid = Study.from_spec(StudySpec.model_validate({"name": "placements", "search": {
        "space": {"model.placement": ["none", "layer3"]}, "seeds": [0, 1, 2]}}), data_on_disk=False)
    log_study(uri, grid, {t.id: 0.6 + 0.01 * t.seed for t in grid.every_trial})
    return uri, {"three": (three, set(lost)), "one": (one, set()), "few": (few, set())}


@pytest.fixture(scope="module")
def reported(store, tmp_path_factory):
    """`ablate report` of each study: its terminal output (whitespace made single) and its folder."""
    uri, _ = store
    made = {}
    for name in ("stage_effects", "stage_effects_one_seed", "stage_effects_few", "placements"):
        out = tmp_path_factory.mktemp(name)
        result = CliRunner().invoke(app, ["report", name, "--tracking-uri", uri, "--out", str(out)])
        assert result.exit_code == 0, result.output
        made[name] = (" ".join(result.output.split()), out)
    return made


def csv_rows(folder) -> list[dict]:
    with open(folder / "report.csv") as f:
        return list(csv.DictReader(f))


def test_report_csv_holds_each_effect_as_stats_effects_fits_it_on_the_finished_trials(store, reported):
    _, studies = store
    study, lost = studies["three"]
    expected = expected_fit(study, planted(study), left_out=lost)
    rows = [r for r in csv_rows(reported["stage_effects"][1]) if r["effect"]]
    assert [r["effect"] for r in rows] == [e["effect"] for e in expected.rows()]
    assert [e.name for e in expected.effects] == [
        "placement.layer1", "placement.layer2", "placement.layer3", "placement.layer4",
        "placement.layer1:placement.layer2", "placement.layer1:placement.layer3", "placement.layer1:placement.layer4"]
    for row, want in zip(rows, expected.rows()):
        for key in ("estimate", "se", "low", "high", "p", "p_holm"):
            assert float(row[key]) == pytest.approx(want[key], rel=1e-9, abs=1e-15), (row["effect"], key)
        assert (row["aliases"], row["method"]) == (want["aliases"], "ols")
        assert (row["metric"], row["n"], row["configuration"]) == ("best_val_macro_f1", "22", "")
    layer3 = next(r for r in rows if r["effect"] == "placement.layer3")
    assert float(layer3["low"]) < LAYER3 < float(layer3["high"]) and float(layer3["p_holm"]) < 0.001
    assert next(r for r in rows if r["effect"] == "placement.layer1:placement.layer2")["aliases"] == \
        "placement.layer3:placement.layer4"
    # The configurations' rows are still there, blank in the effects' columns.
    assert any(r["configuration"] == "placement=layer3+layer4" and not r["effect"] for r in csv_rows(
        reported["stage_effects"][1]))


def test_the_report_leads_with_the_effects_in_words_with_the_design_and_the_trials_left_out(reported):
    terminal, out = reported["stage_effects"]
    md = (out / "report.md").read_text()
    for text in (terminal, md):
        assert "Effects of the factors on best validation macro-F1" in text
        said = re.search(r"placement\.layer3 = on rather than off raises best validation macro-F1 by ([0-9.]+) "
                         r"\(95% CI \+([0-9.]+) to \+([0-9.]+), Holm p (&lt;|<) 0\.001\)\.", text)
        assert said and float(said[2]) < LAYER3 < float(said[3]) and float(said[1]) == pytest.approx(LAYER3, abs=0.005)
        assert "placement.layer1 = on rather than" not in text  # the only effect planted is the only one named
        assert "a 2^(4-1) fractional factorial, resolution IV, generated by D = ABC: 8 of the 16 arms" in text
        assert "Left out of the effects model: 2 of the 24 planned trials (1 failed, 1 diverged)" in text
    # The effects come before the configurations' ranking, as a race's answer does.
    assert terminal.index("Effects of the factors") < terminal.index("Configurations, best first")
    assert md.index("### Effects of the factors") < md.index("### Configurations, best first")
    # An alias in the spec's words: below its effect in the terminal, in a column of its own in the file.
    assert re.search(r"placement\.layer1 x placement\.layer2 [-+]0\.\d+ \[[^]]+\] [0-9.]+ "
                     r"= placement\.layer3 x placement\.layer4", terminal)
    assert "| placement.layer1 x placement.layer2 | " in md
    assert md.count(" | placement.layer3 x placement.layer4 |") == 1
    # Markdown escapes what it would read as HTML: the sentence's "<".
    assert "Holm p &lt; 0.001" in md and "Holm p < 0.001" in terminal


def test_report_html_and_tex_hold_the_effects_escaped_and_the_half_normal_plot_is_a_figure(reported):
    _, out = reported["stage_effects"]
    html, md, tex = ((out / name).read_text() for name in ("report.html", "report.md", "report.tex"))
    assert "<h3>Effects of the factors on best validation macro-F1" in html
    assert "<p>placement.layer3 = on rather than off raises best validation macro-F1 by " in html
    assert "Holm p &lt; 0.001" in html and "<td>placement.layer3 x placement.layer4</td>" in html
    plot = out / "effects_half_normal.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](effects_half_normal.png)" in md and "half-normal plot" in md
    assert html.count("data:image/png;base64,") == md.count("![")  # every figure embedded, the plot with them
    # report.tex: the sentence for the text, then a booktabs table of the effects, escaped for LaTeX.
    assert "placement.layer3 = on rather than off raises best validation macro-F1 by " in tex
    assert "Holm p \\textless{} 0.001" in tex and "Holm p <" not in tex
    assert tex.count("\\begin{table}") == 3  # the effects, first, then Tables 1 and 2
    assert tex.index("tab:stage-effects-effects") < tex.index("tab:stage-effects-f1")
    assert "placement.layer1 $\\times$ placement.layer2 & $" in tex
    assert "& placement.layer3 $\\times$ placement.layer4 \\\\" in tex
    assert "of stage\\_effects:" in tex and "95\\% CI" in tex
    assert tex.count("{") == tex.count("}")


def test_with_one_seed_the_effects_use_lenth_s_pseudo_standard_error_and_say_so(store, reported):
    _, studies = store
    study, _ = studies["one"]
    terminal, out = reported["stage_effects_one_seed"]
    expected = expected_fit(study, planted(study))
    assert expected.method == "lenth"
    for text in (terminal, (out / "report.md").read_text()):
        assert "One seed: no replicate measures the noise, so each effect's standard error is Lenth's pseudo " \
               "standard error" in text
    rows = [r for r in csv_rows(out) if r["effect"]]
    assert {r["method"] for r in rows} == {"lenth"} and len(rows) == len(expected.effects)
    assert [float(r["estimate"]) for r in rows] == pytest.approx([e.estimate for e in expected.effects])


def test_too_few_finished_trials_say_so_in_one_line_instead_of_a_table(reported):
    terminal, out = reported["stage_effects_few"]
    md = (out / "report.md").read_text()
    for text in (terminal, md):
        assert "No effects model from 3 finished trial(s): one seed of 3 runs leaves 2 contrasts" in text
        assert "Left out of the effects model: 5 of the 8 planned trials (5 failed)" in text
    section = md[md.index("### Effects of the factors"):md.index("### Configurations")]
    assert "|" not in section  # words, no table
    assert not any(r["effect"] for r in csv_rows(out) if "effect" in r)
    assert not (out / "effects_half_normal.png").exists()
    assert "No effects model from 3 finished trial(s)" in (out / "report.tex").read_text()


def test_a_grid_study_s_report_has_no_effects_section(reported):
    terminal, out = reported["placements"]
    assert "Effects of the factors" not in terminal
    for name in ("report.md", "report.html", "report.tex"):
        assert "Effects of the factors" not in (out / name).read_text()
    assert not any(row["kind"] == "effect" or row["effect"] for row in csv_rows(out))
    assert not (out / "effects_half_normal.png").exists()
    assert not math.isnan(float(csv_rows(out)[0]["mean"]))


# --- The section from trial records alone: a full factorial, and a terminal's 80 columns ----------------

import io  # noqa: E402

from rich.console import Console  # noqa: E402

from ablation.cli import views  # noqa: E402
from ablation.report.effects import study_effects  # noqa: E402
from ablation.tracking import TrialRecord  # noqa: E402


def finished(study: Study, values: dict[str, float]) -> list[TrialRecord]:
    """Each trial's run as the store returns it: finished, with its trial id and best-epoch score."""
    return [TrialRecord(f"run-{t.id}", t.name, "FINISHED", {}, {"best_val_macro_f1": values[t.id],
                                                                 "test_accuracy": 0.6}, {"ablate.trial_id": t.id})
            for t in study.every_trial]


def test_a_full_factorial_s_effects_have_no_aliases_and_its_design_says_so():
    study = load_study(SPACES / "stage_effects_full.yaml", ["search.seeds=[0, 1]"], data_on_disk=False)
    values = planted(study)
    effects = study_effects(study, finished(study, values), "val_macro_f1", "best validation macro-F1")
    assert effects.design.startswith("Design: the full 2^4 factorial, all 16 arms (factors A placement.layer1,")
    assert effects.fit.effects == expected_fit(study, values).effects
    assert len(effects.fit.effects) == 4 + 6 and not any(e.aliases for e in effects.fit.effects)
    assert not effects.left_out


def test_the_effects_table_fits_80_columns_each_alias_below_its_effect():
    study = load_study(STAGE_EFFECTS, data_on_disk=False)
    effects = study_effects(study, finished(study, planted(study)), "val_macro_f1", "best validation macro-F1")
    console = Console(width=80, record=True, file=io.StringIO())
    views.show(console, effects.table(compact=True))
    lines = console.export_text().splitlines()
    assert max(map(len, lines)) <= 80, "\n".join(lines)
    below = lines.index(next(line for line in lines if line.startswith("placement.layer1 x placement.layer2 "))) + 1
    assert lines[below].rstrip() == "= placement.layer3 x placement.layer4"
