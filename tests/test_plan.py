"""`ablate plan`: a study priced before it runs, with a speed it says how far to trust."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablation import plan
from ablation.cli.main import app
from ablation.plan import Speed

PAPER = str(Path(__file__).resolve().parents[1] / "search_spaces" / "paper.yaml")


def speed(busy: float, spread: float = 0.02) -> Speed:
    return Speed(2e9, spread, busy, "2026-12-02", cached=False)


def test_a_speed_timed_under_load_is_used_once_and_never_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(plan, "_measure", lambda threads: speed(busy=0.6))
    assert plan.calibrate(1).under_load
    assert not (tmp_path / "calibration.json").exists()

    monkeypatch.setattr(plan, "_measure", lambda threads: speed(busy=0.01, spread=0.5))  # quiet but unsteady
    plan.calibrate(1)
    assert not (tmp_path / "calibration.json").exists()

    monkeypatch.setattr(plan, "_measure", lambda threads: speed(busy=0.01))
    assert not plan.calibrate(1).cached
    monkeypatch.setattr(plan, "_measure", lambda threads: pytest.fail("a quiet, steady speed is read back"))
    again = plan.calibrate(1)
    assert again.cached and again.macs_per_second == 2e9 and again.busy == 0.01


def test_the_measured_speed_says_how_busy_the_machine_was_and_how_steady_the_steps_were():
    measured = plan._measure(1, batch=2, image_size=32, steps=3, budget=5)
    assert measured.macs_per_second > 0 and 0 <= measured.busy <= 1 and measured.spread >= 0


def test_a_dataset_not_on_this_machine_is_priced_from_the_specs_split_sizes_and_says_so(tmp_path):
    result = CliRunner().invoke(app, ["plan", PAPER, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    priced = json.loads(result.output)
    assert "is not on this machine" in priced["data_note"] and len(priced["trials"]) == 12
    arm = priced["arms"][0]
    images = {"train": 4160 * 6, "val": 360 * 6, "test": 360 * 6}
    assert arm["train_macs"] == plan.trial_macs(arm["macs"], images, 30)


def test_a_dataset_not_on_this_machine_without_split_sizes_cannot_be_priced_and_says_which_keys(tmp_path):
    result = CliRunner().invoke(app, ["plan", PAPER, "--set", "data.train_per_class=null"])
    assert result.exit_code == 2
    assert "data.train_per_class" in " ".join(result.output.split())


def test_the_estimate_includes_the_studys_start_up_and_each_trials_overhead(tiny_spec, monkeypatch):
    monkeypatch.setattr(plan, "calibrate", lambda threads: Speed(1e30, 0, 0, "today", cached=True))
    from ablation.core import load_study

    priced = plan.plan_study(load_study(tiny_spec), cpus=2)  # one trial at a time: each asks for both cores
    assert priced.estimated_seconds == pytest.approx(plan.STARTUP_SECONDS + 2 * plan.TRIAL_OVERHEAD_SECONDS)
    priced = plan.plan_study(load_study(tiny_spec), cpus=4)  # two at a time
    assert priced.estimated_seconds == pytest.approx(plan.STARTUP_SECONDS + 2 * plan.TRIAL_OVERHEAD_SECONDS / 2)


def test_gpu_hours_come_from_the_named_gpus_published_peak_at_the_stated_utilisation(tiny_spec):
    result = CliRunner().invoke(app, ["plan", str(tiny_spec), "--json", "--gpu", "a100"])
    assert result.exit_code == 0, result.output
    priced = json.loads(result.output)
    assert priced["gpu_hours"] == pytest.approx(2 * priced["total_macs"] / (312e12 * plan.GPU_UTILISATION) / 3600)
    refused = CliRunner().invoke(app, ["plan", str(tiny_spec), "--gpu", "gtx480"])
    assert refused.exit_code == 2 and "a100" in refused.output


def test_plan_says_what_a_trial_holds_in_memory_and_the_concurrency_that_fits_when_all_at_once_would_not(tmp_path):
    from ablation.core.memory import MemoryFit

    fits = MemoryFit(1200, False, 2, 20_000)
    assert fits.fits and fits.describe(2, 1) == ("Memory: each trial's worker needs about 1.2 GB (estimated, within "
                                                 "about 25%); 2 at once need 2.3 GB of the 19.5 GB available.")
    crowded = MemoryFit(3000, True, 16, 23_000)  # a 16-core box, one core a trial, 3 GB each: 48 GB
    said = crowded.describe(16, 1)
    assert not crowded.fits and crowded.fits_at_once == 6
    assert "(the largest peak its trials recorded)" in said and "more than 80% of the 22.5 GB available" in said
    assert said.endswith("6 fit: run them with --set resources.cpu=3 (5 at once).")
    assert "Not even one fits" in MemoryFit(30_000, False, 1, 23_000).describe(2, 1)


def test_the_memory_estimate_is_as_close_to_measured_peaks_as_it_says():
    """benchmarks/memory.py measured real trial workers; the estimate's constants must still match them."""
    import json

    from ablation.core.memory import ESTIMATE_ERROR, trial_memory_mb

    rows = json.loads((Path(__file__).parents[1] / "benchmarks/results/memory.json").read_text())["rows"]
    assert len(rows) >= 5 and len({r["arch"] for r in rows}) >= 3
    for r in rows:
        estimated = trial_memory_mb(r["arch"], r["params"], r["image_size"], r["batch_size"])
        assert abs(estimated / r["measured_mb"] - 1) <= ESTIMATE_ERROR, r


def test_run_warns_before_ray_starts_when_the_trials_at_once_would_not_fit(tmp_path):
    from io import StringIO

    from rich.console import Console

    from ablation.core import load_study
    from ablation.driver.memory_fit import check_memory

    path = tmp_path / "huge.yaml"
    path.write_text("name: huge\nmodel: {arch: resnet152}\ndata: {image_size: 448}\ntrain: {batch_size: 256}\n"
                    "search: {space: {model.placement: [layer4]}}\n")
    out = StringIO()
    need = check_memory(load_study(path), f"sqlite:///{tmp_path / 'none.db'}", None, Console(file=out, width=300))
    assert need > 100_000  # MB: ResNet-152's activations at 448 px, 256 images a batch
    said = " ".join(out.getvalue().split())
    assert "Memory: each trial's worker needs about" in said and "Not even one fits" in said
    assert not (tmp_path / "none.db").exists()  # reading a store that is not there creates none


def test_plan_of_a_fraction_shows_its_size_against_the_full_factorial_its_generators_and_aliases(monkeypatch):
    monkeypatch.setattr(plan, "calibrate", lambda threads: Speed(2e10, 0.01, 0, "2026-12-06", cached=True))
    spec = Path(__file__).resolve().parents[1] / "search_spaces" / "stage_effects.yaml"
    result = CliRunner().invoke(app, ["plan", str(spec)], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert ("a 2^(4-1) fractional factorial, resolution IV: 8 of the 16 arms of the full factorial, generated by "
            "D = ABC (defining relation I = ABCD)") in said
    assert "main effects are clear of two-factor interactions, which are aliased with each other" in said
    assert "A model.placement.layer1 off on" in said
    for effect, alias in (("AB", "CD"), ("AC", "BD"), ("AD", "BC")):
        assert f"{effect} {alias} " in said
    assert "A - placement.layer1" in said and "Training compute:" in said


def test_plan_leads_with_the_header_run_prints_and_lists_trials_only_when_asked(monkeypatch):
    """A race of 6 arms x 8 seeds is 18 to 48 trials, as `run` says; the ids of the 18 it starts with are
    behind --trials."""
    monkeypatch.setattr(plan, "calibrate", lambda threads: Speed(1e10, 0, 0, "today", cached=True))
    race = str(Path(PAPER).with_name("race_quick.yaml"))
    result = CliRunner().invoke(app, ["plan", race], terminal_width=100)
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first == "race_quick: a race of 6 arms, 3 to 8 seeds each (18 to 48 trials), 2 epochs each"
    assert "trial id" not in result.output
    assert "an estimated" in result.output and " to " in result.output.split("an estimated", 1)[1].split(")")[0]
    listed = CliRunner().invoke(app, ["plan", race, "--trials"], terminal_width=100)
    ids = [line for line in listed.output.splitlines() if re.fullmatch(r"[0-9a-f]{10}  placement=\S+ +[0-2]", line)]
    assert len(ids) == 18 and "trial id" in listed.output
