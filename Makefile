# smsgw: everything a fresh machine needs is installed from here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config/smsgw.toml

.PHONY: run test bench lint install install-test clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/smsgw -c $(CONFIG) db migrate
	$(BIN)/smsgw -c $(CONFIG) run

# The suite runs every storage test on SQLite and on PostgreSQL. A server is
# made ready first (.ci/postgres-up); its URL in SMSGW_TEST_PG_URL makes the
# PostgreSQL tests mandatory. With CI=true no server is a failure; by hand
# the PostgreSQL tests are then skipped with the reason.
# The dashboard test drives Debian's chromium (never a downloaded browser);
# as root it is installed here when missing, otherwise that test is skipped.
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "make browser: chromium is missing (as root: apt-get install chromium)" >&2; fi; \
	fi

test: install-test browser
	@url=$$(PG_CHECK_PYTHON=$(BIN)/python bash .ci/postgres-up) || { \
	  if [ "$${CI:-}" = true ] || [ -n "$${SMSGW_TEST_PG_URL:-}" ]; then \
	    echo "make test: no PostgreSQL server (required in CI or when SMSGW_TEST_PG_URL is set)" >&2; exit 1; fi; \
	  echo "make test: no PostgreSQL server; its tests will be skipped" >&2; url=; }; \
	SMSGW_TEST_PG_URL=$$url $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-test
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: install-test
	$(BIN)/ruff check gateway drivers spool tests bench
	$(BIN)/mypy gateway drivers spool

clean:
	rm -rf $(VENV) var build *.egg-info
