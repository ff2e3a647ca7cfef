# The two commands of the README: `make demo` and `make test`. Each installs what it needs first
# (uv, then the locked environment), so a machine with only Python and pip is enough.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --frozen --no-sync
PYTEST_ARGS ?=
# Two pytest-xdist workers: the modules that start a whole platform mostly wait on timers and services,
# so the in-process modules run beside them on the other worker (groups: tests/conftest.py).
PYTEST_WORKERS ?= 2
# Compile bytecode at install: the environment may set PYTHONDONTWRITEBYTECODE, and every CLI
# process would then recompile dvc, mlflow and prefect (seconds per process).
export UV_COMPILE_BYTECODE := 1

.PHONY: install check test scan chaos demo down clean bench bench-models bench-team help

help:
	@echo "make demo   run the whole loop on this machine (leaves the platform up; 'make down' stops it)"
	@echo "make test   run the checks (make check), the bandit scan and the test suite"
	@echo "make check  only the static checks: import layers, ruff lint and format, pyright"
	@echo "make scan   only the security scans (bandit + the model-loading check)"
	@echo "make chaos  the chaos test with a long schedule (40 random kills; CHAOS_KILLS, CHAOS_SEED)"
	@echo "make down   stop every local service mloop started"
	@echo "make bench  run the benchmarks under bench/"
	@echo "make bench-models  many models on one platform: memory, hot-model throughput, sweep, loop latency (1, 5, 20 models)"
	@echo "make bench-team    8 concurrent trains: single machine vs team mode (real PostgreSQL + S3)"

install:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@$(UV) sync --frozen

# bandit: no medium/high finding in the code (config and accepted low findings: [tool.bandit] in
# pyproject.toml); the model-loading check (no pickle, skops allowlist) is tests/core/test_security_scan.py.
BANDIT_TARGETS := mloop flows models serving monitoring

# The static checks: the import layers (import cycles are tests/core/test_import_cycles.py), ruff's lint
# and format check, and pyright over the project ([tool.ruff] and [tool.pyright] in pyproject.toml).
check: install
	$(RUN) lint-imports
	$(RUN) ruff check --quiet .
	$(RUN) ruff format --check --quiet .
	$(RUN) pyright

test: check
	$(RUN) bandit -c pyproject.toml -r $(BANDIT_TARGETS) -ll -q
	$(RUN) pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The chaos test (tests/platform/test_chaos.py) also runs in `make test`, with 10 kills.
CHAOS_KILLS ?= 40
chaos: install
	CHAOS_KILLS=$(CHAOS_KILLS) $(RUN) pytest -q -s -p no:cacheprovider tests/platform/test_chaos.py

demo: install
	$(RUN) mloop demo

down: install
	$(RUN) mloop down

scan: install
	$(RUN) bandit -c pyproject.toml -r $(BANDIT_TARGETS) -ll -q
	$(RUN) pytest -q tests/core/test_security_scan.py

bench: install
	$(RUN) python bench/cli_startup.py
	$(RUN) python bench/ingest.py --shape all
	$(RUN) python bench/train.py
	$(RUN) python bench/serving.py
	$(RUN) python bench/drift.py
	$(RUN) python bench/loop.py

# Its own target (not in `make bench`): it onboards 20 models on a real platform (tens of minutes).
BENCH_MODELS_ARGS ?=
bench-models: install
	$(RUN) python bench/models.py $(BENCH_MODELS_ARGS)

bench-team: install
	$(RUN) python bench/team.py $(BENCH_TEAM_ARGS)

clean: down
	rm -rf .mloop
