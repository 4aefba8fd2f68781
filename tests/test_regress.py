"""benchmarks/regress.py's comparison of two junit reports: a slowdown is told apart from tests added or removed."""

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

BEFORE = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
  <testcase classname="tests.test_a" name="test_same" time="1.0"/>
  <testcase classname="tests.test_a" name="test_slower[x]" time="2.0"/>
  <testcase classname="tests.test_a" name="test_faster" time="3.0"/>
  <testcase classname="tests.test_b" name="test_gone" time="4.0"><skipped message="no browser"/></testcase>
</testsuite></testsuites>"""

AFTER = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="5">
  <testcase classname="tests.test_a" name="test_same" time="1.0"/>
  <testcase classname="tests.test_a" name="test_slower[x]" time="5.0"><failure message="boom"/></testcase>
  <testcase classname="tests.test_a" name="test_faster" time="1.0"/>
  <testcase classname="tests.test_c" name="test_new" time="6.0"><failure message="a"/><error message="b"/></testcase>
  <testcase classname="tests.test_c" name="test_same" time="0.5"><error message="fixture"/></testcase>
</testsuite></testsuites>"""


@pytest.fixture
def regress(monkeypatch):
    # The script imports its neighbours (light_core, results_file) as a script does, from its own folder.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import regress

    return regress


def test_junit_cases_are_keyed_by_nodeid_with_their_outcome(regress):
    after = regress.parse_junit(AFTER)
    assert {t: v["outcome"] for t, v in after.items()} == {
        "tests.test_a::test_same": "passed", "tests.test_a::test_slower[x]": "failed",
        "tests.test_a::test_faster": "passed", "tests.test_c::test_new": "failed", "tests.test_c::test_same": "error"}
    assert regress.parse_junit(BEFORE)["tests.test_b::test_gone"] == {"seconds": 4.0, "outcome": "skipped"}


def test_the_wall_time_difference_is_split_into_added_removed_slower_faster_and_the_rest(regress):
    before = {t: v["seconds"] for t, v in regress.parse_junit(BEFORE).items()}
    after = {t: v["seconds"] for t, v in regress.parse_junit(AFTER).items()}
    c = regress.compare(before, after, wall_before=12.0, wall_after=20.0, top=2)
    assert c["added"] == {"tests.test_c::test_new": 6.0, "tests.test_c::test_same": 0.5}
    assert c["removed"] == {"tests.test_b::test_gone": 4.0}
    assert c["explained"] == {"added": 6.5, "removed": -4.0, "common slower": 3.0, "common faster": -2.0, "rest": 4.5}
    assert c["counts"] == {"common": 3, "added": 2, "removed": 1, "common slower": 1, "common faster": 1}
    # Largest change either way first; the unchanged test is cut by top=2.
    assert [(t["test"], t["ratio"], t["growth"]) for t in c["top_common"]] == [
        ("tests.test_a::test_slower[x]", 2.5, 3.0), ("tests.test_a::test_faster", 0.33, -2.0)]


@pytest.mark.slow  # two pytest sessions in their own processes, one with xdist's workers
def test_each_pytest_session_of_a_make_test_leaves_its_own_junit_report(regress, tmp_path):
    """What `regress.py --parts make` reads: a `make test` runs its tiers as separate sessions, each of
    whose reports must survive the next; under xdist only the controller writes one."""
    import os
    import subprocess
    import sys

    (tmp_path / "test_tier.py").write_text("def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS), "JUNIT_EACH_DIR": str(reports),
           "PYTEST_ADDOPTS": "-p junit_each -p no:cacheprovider"}
    for tier in (["-k", "one"], ["-n", "2"]):
        subprocess.run([sys.executable, "-m", "pytest", "-q", *tier, "test_tier.py"], cwd=tmp_path, env=env,
                       check=True, capture_output=True)
    found = sorted((regress.parse_junit(xml.read_text()) for xml in reports.glob("*.xml")), key=len)
    assert [sorted(report) for report in found] == [["test_tier::test_one"],
                                                     ["test_tier::test_one", "test_tier::test_two"]]
