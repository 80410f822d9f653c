# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
DOCS ?= samples
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install models run browser compose test lint typecheck unit bench clean

# torch first, from the CPU wheel on this machine's disk: with it installed, the project's
# torch range is already met and no resolver pulls a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

models: install
	$(BIN)/appliance models prepare

# Serves the chat at http://127.0.0.1:7860 over samples/ (watched: edit it and the index
# follows). On the first start it prints the password of the 'admin' account.
run: models
	APPLIANCE_DOCS_DIR=$${APPLIANCE_DOCS_DIR:-$(DOCS)} $(BIN)/appliance serve

# The browser tests drive Debian's Chromium; Playwright never downloads a browser.
browser:
	@test -x /usr/bin/chromium || { \
		echo "installing Debian's chromium for the browser tests"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
		|| { $(SUDO) apt-get update -q >/dev/null && \
		     $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; }; }

# The deployment tests validate compose.yaml with Debian's docker-compose (v1.29); it needs no
# Docker engine, and none is installed with it.
compose:
	@test -x /usr/bin/docker-compose || { \
		echo "installing Debian's docker-compose for the deployment tests"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose >/dev/null \
		|| { $(SUDO) apt-get update -q >/dev/null && \
		     $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose >/dev/null; }; }

lint: install
	$(BIN)/ruff check appliance ingest ui tests bench

typecheck: install
	$(BIN)/mypy

test: lint typecheck browser compose
	$(BIN)/pytest -q -p no:cacheprovider

unit: install
	$(BIN)/pytest -q tests/unit

# Needs the Python 3.11 docs (apt-get install python3.11-doc); about an hour on 2 cores.
BENCH_DATA ?= .bench/data
bench: models
	$(BIN)/python -m bench.ingest_bench --keep-data $(BENCH_DATA)
	$(BIN)/python -m bench.ask_bench --data-dir $(BENCH_DATA)

clean:
	rm -rf $(VENV) data .bench .mypy_cache .ruff_cache .pytest_cache
