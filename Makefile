# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
DOCS ?= samples
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install models run browser compose ocr test lint typecheck unit bench clean

# llama.cpp is compiled here for this CPU, except for its AMX kernels: on Xeons with AMX
# tiles they crash (SIGSEGV in ggml_backend_amx_mul_mat at the first prompt of more than one
# token, seen with llama-cpp-python 0.3.36). Built without pip's wheel cache, which may hold a
# build made without these flags; once per virtualenv.
LLAMA_CPP := llama-cpp-python[server]==0.3.36
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_STAMP := $(VENV)/.llama-cpp-0.3.36

$(LLAMA_STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	CMAKE_ARGS="-DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'" \
		$(PIP) install --no-cache-dir '$(LLAMA_CPP)'
	touch $(LLAMA_STAMP)

# torch first, from the CPU wheel on this machine's disk: with it installed, the project's
# torch range is already met and no resolver pulls a CUDA build.
$(STAMP): pyproject.toml $(LLAMA_STAMP)
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

models: install
	$(BIN)/appliance models prepare

# Serves the chat at http://127.0.0.1:7860 over samples/ (watched: edit it and the index
# follows). On the first start it prints the password of the 'admin' account.
run: models ocr
	APPLIANCE_DOCS_DIR=$${APPLIANCE_DOCS_DIR:-$(DOCS)} $(BIN)/appliance serve

# Installs Debian packages ($(2), apt-get options $(3)) when $(1) is missing: with sudo when
# not root, and with an `apt-get update` only when the first try fails.
APT_INSTALL = $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q
define ensure_debian
	@test -x $(1) || { \
		echo "installing Debian's $(2)"; \
		$(APT_INSTALL) $(3) $(2) >/dev/null \
		|| { $(SUDO) apt-get update -q >/dev/null && $(APT_INSTALL) $(3) $(2) >/dev/null; }; }
endef

# The browser tests drive Debian's Chromium; Playwright never downloads a browser.
browser:
	$(call ensure_debian,/usr/bin/chromium,chromium chromium-driver)

# OCR of scanned documents and images: Debian's Tesseract, and one language package per
# language of APPLIANCE_OCR_LANGUAGES (eng+deu: tesseract-ocr-eng tesseract-ocr-deu).
OCR_LANGUAGES ?= $(or $(APPLIANCE_OCR_LANGUAGES),eng)
OCR_LANGS := $(subst +, ,$(OCR_LANGUAGES))
TESSDATA := /usr/share/tesseract-ocr/5/tessdata
ocr:
	$(call ensure_debian,/usr/bin/tesseract,tesseract-ocr $(foreach l,$(OCR_LANGS),tesseract-ocr-$(subst _,-,$(l))))
	@missing=; for lang in $(OCR_LANGS); do \
		test -e $(TESSDATA)/$$lang.traineddata \
		|| missing="$$missing tesseract-ocr-$$(echo $$lang | tr _ -)"; done; \
	test -z "$$missing" || { echo "installing Debian's$$missing"; \
		$(APT_INSTALL) $$missing >/dev/null \
		|| { $(SUDO) apt-get update -q >/dev/null && $(APT_INSTALL) $$missing >/dev/null; }; }

# The deployment tests validate compose.yaml with Debian's docker-compose (v1.29); it needs no
# Docker engine, and none is installed with it.
compose:
	$(call ensure_debian,/usr/bin/docker-compose,docker-compose,--no-install-recommends)

lint: install
	$(BIN)/ruff check appliance ingest ui tests bench
	$(BIN)/ruff format --check appliance ingest ui tests bench

typecheck: install
	$(BIN)/mypy

test: lint typecheck browser compose ocr
	$(BIN)/pytest -q -p no:cacheprovider

unit: install
	$(BIN)/pytest -q tests/unit

# Needs the Python 3.11 docs (apt-get install python3.11-doc); about an hour on 2 cores.
BENCH_DATA ?= .bench/data
bench: models ocr
	$(BIN)/python -m bench.ingest_bench --keep-data $(BENCH_DATA)
	$(BIN)/python -m bench.retrieval_bench --data-dir $(BENCH_DATA) --plain-data-dir $(BENCH_DATA)-plain
	$(BIN)/python -m bench.ask_bench --data-dir $(BENCH_DATA)
	$(BIN)/python -m bench.ocr_bench
	$(BIN)/python -m bench.thread_bench

clean:
	rm -rf $(VENV) data .bench .mypy_cache .ruff_cache .pytest_cache
