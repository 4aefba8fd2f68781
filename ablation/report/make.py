"""`ablate report`'s files: the report built from the store, written as Markdown, HTML, CSV and LaTeX
with its figures, and logged to the study's parent run."""

from __future__ import annotations

from pathlib import Path

from ablation.core.names import REPORT_ARTIFACTS
from ablation.report.files import write
from ablation.report.model import StudyReport, build_report
from ablation.tracking import StoreUnusable, find_study


def make_report(uri: str, study: str, out: Path, *,
                baseline: str | None = None) -> tuple[StudyReport, list[Path], str | None]:
    """Build the report of `study`, write it to `out`, and log it as the artifacts `report/` of the
    study's parent run, so the MLflow UI shows it beside the runs. Returns the report, the files
    written, and why the store did not take them (None when it did): the files are kept either way."""
    report = build_report(uri, study, baseline=baseline)
    written = write(report, out)
    try:
        find_study(uri, study).run.log_folder(out, REPORT_ARTIFACTS)
    except StoreUnusable as err:
        return report, written, str(err)
    return report, written, None
