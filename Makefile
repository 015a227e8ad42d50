# One task runner, called unchanged by CI (.ci/run). Every target makes its own .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench bench-quick clean wrk haproxy mutate soak failover

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

# Mutation testing of greenroom/actors and greenroom/store ([tool.mutmut] in pyproject.toml);
# not part of `make test`. Starts from a fresh copy of the sources every time, then prints the
# score and every mutant still alive (tools/mutate_report.py). MUTATE_JOBS: parallel mutants;
# MUTATE_ONLY: mutant name patterns, e.g. MUTATE_ONLY='greenroom.store.*' (a shorter run).
MUTATE_JOBS ?= 4
MUTATE_ONLY ?=
mutate: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children $(MUTATE_JOBS) $(MUTATE_ONLY); status=$$?; \
	  $(BIN)/python tools/mutate_report.py && exit $$status

# wrk is the load generator of poll_rps; installed from Debian when missing (needs root).
wrk:
	@command -v wrk >/dev/null || (apt-get install -y wrk >/dev/null 2>&1 || \
	  (apt-get update >/dev/null && apt-get install -y wrk >/dev/null))

# haproxy is the load balancer of forward_share (several nodes); from Debian when missing.
haproxy:
	@command -v haproxy >/dev/null || (apt-get install -y haproxy >/dev/null 2>&1 || \
	  (apt-get update >/dev/null && apt-get install -y haproxy >/dev/null))

bench: $(STAMP) wrk haproxy
	$(BIN)/python -m bench

bench-quick: $(STAMP) wrk haproxy
	$(BIN)/python -m bench --quick

# Soak: `greenroom serve` under mixed churn for SOAK_SECONDS (tests/soak/load.py), a
# trajectory line every ~10 s, then the leak checks of the pytest soak; exit 1 if one fails.
SOAK_SECONDS ?= 600
soak: $(STAMP)
	$(BIN)/python -m tests.soak.load --seconds $(SOAK_SECONDS)

# The failure test of three nodes over PostgreSQL behind HAProxy (tests/cluster; also part of
# `make test`): the failover time of each fault on stdout and in artifacts/failover.json.
# JEPSEN_SEED picks another fault schedule.
failover: $(STAMP)
	$(BIN)/pytest -s -p no:cacheprovider tests/cluster/test_failover.py

clean:
	rm -rf $(VENV) .greenroom build *.egg-info
