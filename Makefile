# One task runner, called unchanged by CI (.ci/run). Every target makes its own .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench bench-quick clean wrk

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/greenroom serve

test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check greenroom tests bench examples
	$(BIN)/ruff format --check greenroom tests bench examples
	$(BIN)/mypy

# wrk is the load generator of poll_rps; installed from Debian when missing (needs root).
wrk:
	@command -v wrk >/dev/null || (apt-get install -y wrk >/dev/null 2>&1 || \
	  (apt-get update >/dev/null && apt-get install -y wrk >/dev/null))

bench: $(STAMP) wrk
	$(BIN)/python -m bench

bench-quick: $(STAMP) wrk
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .greenroom build *.egg-info
