# The two commands of the README: `make run` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= development.ini
# Extras for `make run`, e.g. EXTRAS=s3 (boto3, for STORAGE_URL=s3://...). `make test`
# installs the test extra, which has what the tests of every extra need.
EXTRAS ?=
# What running needs, then what testing adds: `make test` after `make run` installs only the
# test tools (Playwright, moto, schemathesis ...), and `make run` never installs them.
# (one stamp per set of extras: `make run EXTRAS=s3` after a plain `make run` adds boto3)
RUN_STAMP  := $(VENV)/.installed-run$(if $(EXTRAS),-$(EXTRAS))
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test install install-test dist bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.3'

# Reinstall whenever the declared dependencies or their pins change. uv (pinned in
# constraints.txt) installs the pins in about 20 s where pip takes about 50; pip does it
# where uv cannot be installed. Both compile the byte code (uv only when asked): without
# it every new Python process compiles what it imports, twice as slow to start where
# PYTHONDONTWRITEBYTECODE is set.
PINS := -c constraints.txt --build-constraint build-constraints.txt
define pip_install
	if $(BIN)/python -m pip install --quiet -c constraints.txt uv; then \
		$(BIN)/python -m uv pip install --quiet --compile-bytecode --python $(BIN)/python \
			$(PINS) $(1); \
	else \
		$(BIN)/python -m pip install --quiet $(PINS) $(1); \
	fi
endef

$(RUN_STAMP): $(BIN)/python pyproject.toml constraints.txt build-constraints.txt
	$(call pip_install,-e '.$(if $(EXTRAS),[$(EXTRAS)])')
	touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(call pip_install,-e '.[test]')
	touch $@

install: $(RUN_STAMP)

install-test: $(TEST_STAMP)

run: $(RUN_STAMP)
	$(BIN)/collector -c $(CONFIG) migrate
	$(BIN)/collector -c $(CONFIG) serve

# The release: an sdist, and the wheel built from it (so the sdist is proven complete),
# in dist/ (docs/install.md). uv builds both; pip, where uv cannot be installed, the wheel.
dist: $(BIN)/python
	rm -rf dist
	if $(BIN)/python -m pip install --quiet -c constraints.txt uv; then \
		$(BIN)/python -m uv build --build-constraint build-constraints.txt --out-dir dist; \
	else \
		$(BIN)/python -m pip wheel --no-deps --build-constraint build-constraints.txt \
			--wheel-dir dist . && echo "no uv: built the wheel only, no sdist"; \
	fi
	ls -l dist

# One pytest-xdist worker per core (TEST_WORKERS=0: all in this process); an idle worker
# takes tests from a busy one (worksteal: the slow crash runs would otherwise leave one
# worker finishing alone); each worker has a database of its own (tests/databases.py).
TEST_WORKERS ?= auto

# Byte code is cached even where PYTHONDONTWRITEBYTECODE is set: each worker, server and
# console command the tests start would otherwise compile the app and the test modules again
# (about 10 % of the suite's CPU time). The caches are in __pycache__/, ignored by git.
test: $(TEST_STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal --cov --cov-report=term --durations=15 $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python bench/upload_download.py
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) var .pytest_cache .coverage dist build
