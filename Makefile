# Two commands matter: `make serve` (the demo) and `make test` (every test). Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed

.PHONY: serve test test-unit test-e2e soak soak-churn cluster setup browser tools clean

serve: setup
	$(BIN)/chat-widget serve $(ARGS)

test: setup browser tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: setup tools
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

test-e2e: setup browser tools
	$(BIN)/python -m pytest e2e $(PYTEST_ARGS)

soak: setup browser
	$(BIN)/python -m pytest -m soak $(PYTEST_ARGS)

# The server's churn soak alone (tests/test_churn_soak.py: 10,000 held, 100 in and out a second, 10 minutes;
# SOAK_CHURN_HELD, SOAK_CHURN_RATE, SOAK_CHURN_MINUTES, SOAK_CHURN_P99_MS to size it)
soak-churn: setup
	$(BIN)/python -m pytest -m soak tests/test_churn_soak.py $(PYTEST_ARGS)

# Redis, three instances and nginx running deploy/nginx.conf, on loopback ports; Ctrl-C stops them
# (scripts/cluster; ARGS="--store memory" without Redis, ARGS="--help" for the rest).
cluster: setup tools
	$(BIN)/python scripts/cluster $(ARGS)

setup: $(PY_STAMP) $(NPM_STAMP)

$(PY_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

browser: $(PY_STAMP)
	@scripts/ensure-chromium

# nginx for the proxy tests, redis-server for the shared store's (tests/nginx.py and tests/redis_server.py
# run their own on a loopback port; the system services stay off)
tools:
	@scripts/ensure-nginx
	@scripts/ensure-redis

clean:
	rm -rf $(VENV) node_modules

# Screenshots of the embedded widget in each state, for the README and docs (committed PNGs).
.PHONY: screenshots
screenshots: setup browser
	$(BIN)/python scripts/screenshots --out docs/screenshots

# ---- benchmarks (bench/, docs/performance.md); results in bench/results/ (gitignored) ----
.PHONY: bench-connect bench-bytes bench-reconnect bench-capacity bench-churn bench-plot bench-fallback bench-hostload bench-consultant bench-flood bench-compress bench-smoke bench-cluster

bench-connect: setup browser
	$(BIN)/python bench/connect.py $(BENCH_ARGS)

bench-bytes: setup browser
	$(BIN)/python bench/bytes.py $(BENCH_ARGS)

bench-reconnect: setup browser
	$(BIN)/python bench/reconnect.py $(BENCH_ARGS)

bench-capacity: setup
	$(BIN)/python bench/capacity.py $(BENCH_ARGS)

# 10,000 sockets held while 100 a second come and go, 10 minutes (bench/churn.py; BENCH_ARGS="--held 2000 --minutes 2")
bench-churn: setup
	$(BIN)/python bench/churn.py $(BENCH_ARGS)

# docs/capacity-rtt.svg and docs/churn-memory.svg from bench/results/*-latest.json (bench/plot.py)
bench-plot: setup
	$(BIN)/python bench/plot.py $(BENCH_ARGS)

bench-fallback: setup
	$(BIN)/python bench/fallback.py $(BENCH_ARGS)

bench-hostload: setup browser
	$(BIN)/python bench/hostload.py $(BENCH_ARGS)

bench-consultant: setup
	$(BIN)/python bench/consultant.py $(BENCH_ARGS)

bench-flood: setup
	$(BIN)/python bench/flood.py $(BENCH_ARGS)

# Several instances behind deploy/nginx.conf on one Redis, against one instance on SQLite (bench/cluster.py)
bench-cluster: setup tools
	$(BIN)/python bench/cluster.py $(BENCH_ARGS)

bench-compress: setup
	$(BIN)/python scripts/compress-assets

bench-smoke: setup browser tools
	$(BIN)/python bench/connect.py --smoke
	$(BIN)/python bench/bytes.py --smoke
	$(BIN)/python bench/reconnect.py --smoke
	$(BIN)/python bench/capacity.py --smoke
	$(BIN)/python bench/fallback.py --smoke
	$(BIN)/python bench/hostload.py --smoke
	$(BIN)/python bench/consultant.py --smoke
	$(BIN)/python bench/flood.py --smoke
	$(BIN)/python bench/cluster.py --smoke
