"""A pytest plugin for `benchmarks/regress.py`: each pytest session a command starts writes its own junit
xml report into $JUNIT_EACH_DIR, so a `make test` that runs its tiers as separate sessions leaves one report
per tier, where a `--junitxml` in PYTEST_ADDOPTS would have each overwrite the last. Loaded with
`-p junit_each` from PYTEST_ADDOPTS, with this folder on PYTHONPATH."""

import os
import time

import pytest


@pytest.hookimpl(tryfirst=True)  # before the junitxml plugin's own configure reads the option
def pytest_configure(config):
    folder = os.environ.get("JUNIT_EACH_DIR")
    if folder and not hasattr(config, "workerinput"):  # xdist's workers report to their controller
        config.option.xmlpath = os.path.join(folder, f"junit-{time.time_ns()}-{os.getpid()}.xml")
