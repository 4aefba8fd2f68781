# The two commands a fresh clone needs: `make demo` and `make test`; `make check` is the fast tier of
# the tests. Each creates .venv/ on first use and reinstalls only when pyproject.toml or requirements.lock changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check install clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ablate run search_spaces/quickstart.yaml
	$(BIN)/ablate report quickstart

# The fast tier: every test that starts no Ray, no MLflow server and no `ablate` process, and trains no
# real study (tests/conftest.py refuses Ray in it), in one process per core (pytest-xdist): they share nothing
# but their folders, which are each test's own.
FAST_TIER := $(BIN)/python -m pytest -q -m "not slow" -n auto

# Every test, and what CI runs: the fast tier, then the slow tier in one process, since its tests each start
# Ray or train on every core (two at once took each about twice as long) and the memory-kill tests' Ray
# monitor must see no other test's memory. Both tiers run whatever the first gives.
test: $(STAMP)
	$(FAST_TIER); fast=$$?; \
	$(BIN)/python -m pytest -q -m slow; slow=$$?; \
	test $$fast -eq 0 -a $$slow -eq 0

check: $(STAMP)
	$(FAST_TIER)

clean:
	rm -rf $(VENV) ablate_runs
