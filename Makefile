# aiida-ilmlff: two commands do all the set-up on a fresh Debian machine.
#   make demo   the main job (builds, labels, trains, runs and compares; see README)
#   make demo-litfsi   the same for LiTFSI/PYR14TFSI at two Li+ fractions, one model over both
#   make test   the test suite (make test-protocols: the full-size protocol runs it leaves out;
#               make test-faults: the daemon killed in the middle of a pipeline, on both profiles;
#               make test-litfsi: the real LiTFSI/PYR14TFSI pipeline over two compositions)
# Both are idempotent. AiiDA's configuration lives in .aiida/ inside this checkout (AIIDA_PATH=checkout),
# so a user's ~/.aiida is never touched.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
export AIIDA_PATH := $(CURDIR)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
STAMP := $(VENV)/.ilmlff-installed
PYTEST_ARGS ?=
# Two pytest-xdist workers (one per core: every job is single-threaded). Each worker has its own AiiDA test
# profile; the expensive shared fixtures (tests/fixtures: labelled frames, tiny models) are cached on disk
# behind a file lock, so they are built once. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(PYTEST_WORKERS)
DEMO_ARGS ?=

.PHONY: install setup test test-fast test-protocols test-faults test-litfsi test-study demo demo-litfsi lint docs clean-aiida

$(STAMP): pyproject.toml tools/bootstrap.sh
	bash tools/bootstrap.sh
	touch $(STAMP)

install: $(STAMP)

setup: install
	$(BIN)/aiida-ilmlff setup

test: setup
	$(BIN)/python -m pytest -ra $(PYTEST_PARALLEL) -m "not protocol and not faults and not study and not litfsi" $(PYTEST_ARGS)

test-protocols: setup
	$(BIN)/python -m pytest -ra $(PYTEST_PARALLEL) -m protocol $(PYTEST_ARGS)

# The fault tests (tests/test_faults.py, 15-20 min on 2 cores): the smallest pipeline undisturbed, then on each profile
# (PostgreSQL + RabbitMQ, SQLite + ZeroMQ) with its daemon SIGKILLed during labelling and again during training.
# One process: they time the restart and must not share the 2 cores with other tests.
test-faults: setup
	$(BIN)/python -m pytest -ra -n 0 -m faults $(PYTEST_ARGS)

# The real LiTFSI/PYR14TFSI pipeline over two compositions (tests/pipeline/test_pipeline_litfsi_real.py, a
# fast-dft AIMD of a 45- and a 61-atom box: 14.5 min of one worker inside make test, 9.2 min alone): run by .ci/run
# after test-faults; outside make test (fresh clone 2026-12-07: 44.6 min with it, 34.2 min without).
test-litfsi: setup
	$(BIN)/python -m pytest -ra -n 0 -m litfsi $(PYTEST_ARGS)

# The PYR14BF4 study at its smallest (examples/study_pyr14bf4.py --quick) through a daemon: every stage, 20 min.
test-study: setup
	$(BIN)/python -m pytest -ra -n 0 -m study $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -ra $(PYTEST_PARALLEL) -m "not slow and not services and not daemon and not slurm" $(PYTEST_ARGS)

demo: setup
	$(BIN)/python examples/pyr14bf4.py $(DEMO_ARGS)

# LiTFSI/PYR14TFSI at x = 0 and 1/2, one model over both (docs/litfsi.md)
demo-litfsi: setup
	$(BIN)/python examples/litfsi_pyr14tfsi.py $(DEMO_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: install
	$(BIN)/sphinx-build -W -b html docs docs/_build/html

clean-aiida:
	-$(BIN)/verdi daemon stop
	rm -rf .aiida
