"""The setup and provenance a report states: the study's settings from its spec, the values it swept in
the spec's order, the seeds planned and run, and where its runs came from (git commit, versions, dataset
input, worker memory)."""

import re

from ablation import tracking
from reported_studies import log_interrupted_study


def test_the_report_states_the_setup_and_the_provenance_its_runs_carry(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = log_interrupted_study(uri, {"none": {0: 0.70, 1: 0.74}, "layer4": {0: 0.80}})
    parent = tracking.find_study(uri, "interrupted").run
    parent.set_tags({"mlflow.source.git.commit": "c95b736", "ablate.version.torch": "2.14.1"})
    from mlflow.entities import Dataset, DatasetInput, InputTag

    parent.client.log_inputs(parent.run_id, datasets=[DatasetInput(
        Dataset("synthetic", "d1g35t", "local", "/data", profile='{"images": 1200}'),
        tags=[InputTag("mlflow.data.context", "train")])])
    from ablation.report.model import build_report
    from ablation.report.files import write

    report = build_report(uri, "interrupted")
    setup = dict(report.setup)
    assert setup["epochs"] == str(spec.train.epochs) and setup["batch size"] == str(spec.train.batch_size)
    assert setup["learning rate"] == str(spec.train.lr) and setup["optimizer"] == spec.train.optimizer
    assert setup["dataset"] == spec.data.dataset and setup["image size (px)"] == str(spec.data.image_size)
    assert setup["placement"].startswith("swept: ")
    assert setup["seeds planned"] == "[0, 1]" and setup["seeds run"] == "0, 1"
    assert setup["study metric"] == "val_macro_f1 (max); configurations ranked on test_macro_f1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", setup["study started"])
    assert setup["git commit"] == "c95b736" and setup["ablate.version.torch"] == "2.14.1"
    assert setup["git branch"] == "not recorded"
    assert setup["dataset input (train)"] == "synthetic, digest d1g35t (images 1200)"
    # Runs 2, 3 and 4 of the store (after the parent) finished: 800, 900 and 1,000 MB.
    assert setup["trial worker memory"] == "peak RSS median 900 MB, largest 1,000 MB, over 3 trials"
    write(report, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "### Setup and provenance" in md and "| git commit | c95b736 |" in md


def test_the_setup_lists_swept_values_in_the_specs_order_not_the_stores():
    from ablation.report.provenance import setting
    from ablation.tracking import TrialRecord

    order = ["none", "layer1", "layer2", "layer3", "layer4", "all"]
    records = [TrialRecord(str(i), f"placement={p}", "FINISHED", {"model.placement": p}, {})
               for i, p in enumerate(["layer3", "all", "none", "layer1", "layer4", "layer2"])]
    tree = {"search": {"space": {"model.placement": order}}}
    assert setting("model.placement", records, {}, tree, ["model.placement"]) == \
        "swept: none, layer1, layer2, layer3, layer4, all"
    assert setting("model.placement", records, {}, None, ["model.placement"]) == \
        "swept: all, layer1, layer2, layer3, layer4, none"  # no spec at hand: sorted, the same every time
