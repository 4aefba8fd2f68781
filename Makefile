# The two commands a fresh clone needs: `make demo` and `make test`; `make check` is the fast tier of
# the tests. Each creates .venv/ on first use and reinstalls only when pyproject.toml or requirements.lock changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check install clean

# torch from PyPI carries CUDA, whose libraries every process that imports torch maps and sets up even
# without a GPU: 277 MB more per process than torch's CPU build (docs/benchmarks.md). On a machine
# without one, `make clean install TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu` takes the CPU
# build (the lock's torch==2.14.1 is satisfied by 2.14.1+cpu), as the Docker image's build argument does.
TORCH_INDEX_URL ?=

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		$(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) -c requirements.lock -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ablate run search_spaces/quickstart.yaml
	$(BIN)/ablate report quickstart

# The fast tier: every test that starts no Ray, no MLflow server and no `ablate` process, and trains no
# real study (tests/conftest.py refuses Ray in it), in one process per core (pytest-xdist): they share nothing
# but their folders, which are each test's own. Each file's tests go to one process (loadscope), so a
# module's fixture (test_report_effects.py's store, 7-8 s) is built once: 102-104 s against 107-112 s.
FAST_TIER := $(BIN)/python -m pytest -q -m "not slow" -n auto --dist loadscope

# Every test, and what CI runs: the fast tier, then the slow tier two at a time (one such test keeps the two
# cores 58-69% busy, two keep them 92-94% busy: docs/benchmarks.md), then the tests marked `alone` one
# at a time, since Ray's memory monitor in them (tests/test_memory_kill.py) would see the others' memory.
# All three run whatever the first gives. The slow tier names its ten slowest tests (the README's table).
SLOW_TIER := $(BIN)/python -m pytest -q -m "slow and not alone" -n 2 --dist worksteal --durations=10
test: $(STAMP)
	$(FAST_TIER); fast=$$?; \
	$(SLOW_TIER); slow=$$?; \
	$(BIN)/python -m pytest -q -m alone; alone=$$?; \
	test $$fast -eq 0 -a $$slow -eq 0 -a $$alone -eq 0

check: $(STAMP)
	$(FAST_TIER)

clean:
	rm -rf $(VENV) ablate_runs
