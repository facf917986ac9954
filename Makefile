# The two commands of the README: `make run` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= development.ini
STAMP  := $(VENV)/.installed

.PHONY: run test install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.3'

# Reinstall whenever the declared dependencies or their pins change. uv (pinned in
# constraints.txt) installs the pins in about 20 s where pip takes about 50; pip does it
# where uv cannot be installed. Both compile the byte code (uv only when asked): without
# it every new Python process compiles what it imports, twice as slow to start where
# PYTHONDONTWRITEBYTECODE is set.
PIN := -c constraints.txt --build-constraint build-constraints.txt -e '.[test]'
$(STAMP): $(BIN)/python pyproject.toml constraints.txt build-constraints.txt
	if $(BIN)/python -m pip install --quiet -c constraints.txt uv; then \
		$(BIN)/python -m uv pip install --quiet --compile-bytecode --python $(BIN)/python \
			$(PIN); \
	else \
		$(BIN)/python -m pip install --quiet $(PIN); \
	fi
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/collector -c $(CONFIG) migrate
	$(BIN)/collector -c $(CONFIG) serve

# One pytest-xdist worker per core (TEST_WORKERS=0: all in this process); an idle worker
# takes tests from a busy one (worksteal: the slow crash runs would otherwise leave one
# worker finishing alone); each worker has a database of its own (tests/databases.py).
TEST_WORKERS ?= auto

# Byte code is cached even where PYTHONDONTWRITEBYTECODE is set: each worker, server and
# console command the tests start would otherwise compile the app and the test modules again
# (about 10 % of the suite's CPU time). The caches are in __pycache__/, ignored by git.
test: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal --cov --cov-report=term --durations=15 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/upload_download.py
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) var .pytest_cache .coverage
