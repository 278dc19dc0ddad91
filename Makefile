# wxgate: `make demo` to see it work, `make test` to prove it. Everything installs itself.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install chromium demo test test-fast check lint sdk typecheck rules manifests bench bench-full bench-instructions clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test,dev]'
	@touch $(STAMP)

install: $(STAMP)

# tests/system/browser drive Debian's Chromium through Playwright (Playwright's own download is not used).
chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

demo: $(STAMP)
	$(PY) -m wxgate demo

test: $(STAMP) chromium
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP) chromium
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

check: lint typecheck rules manifests
	$(VENV)/bin/lint-imports

# Prometheus rules: checked, then unit-tested (deploy/prometheus/tests, written by
# scripts/prom_rule_tests.py). promtool comes with Debian's `prometheus` package; installed when apt can.
rules: $(STAMP)
	@command -v promtool >/dev/null || (command -v apt-get >/dev/null && \
		(apt-get install -y -qq prometheus >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq prometheus >/dev/null 2>&1))) || true
	$(PY) scripts/prom_rule_tests.py --check
	@if command -v promtool >/dev/null; then \
		promtool check rules deploy/prometheus/alerts.yml deploy/prometheus/config-alerts.yml && \
		promtool test rules deploy/prometheus/tests/*_test.yml; \
	else echo "NOTE: promtool not found and not installable here (apt-get install prometheus):" \
		"deploy/prometheus/*.yml were not checked or unit-tested"; fi

# deploy/k8s against the Kubernetes schemas (kubernetes-validate, offline) and the KEDA
# ScaledObject against KEDA's CRD schema (@kubernetes-models/keda from npm, when npm is here).
KEDA_JS := $(VENV)/node-keda/node_modules/@kubernetes-models/keda/package.json
$(KEDA_JS):
	@command -v npm >/dev/null && npm install -s --no-audit --no-fund \
		--prefix $(VENV)/node-keda @kubernetes-models/keda@2.0.0 >/dev/null 2>&1 || true

manifests: $(STAMP) $(KEDA_JS)
	$(PY) scripts/check_manifests.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(PY) scripts/unasync.py --check

# The sync SDK client is generated from the async one: run after editing sdk/async_client.py.
sdk: $(STAMP)
	$(PY) scripts/unasync.py

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict src

bench: $(STAMP)
	$(PY) bench/run.py --quick

bench-full: $(STAMP)
	$(PY) bench/run.py --full

# Instructions per message on the store's hot paths (valgrind): immune to a noisy machine.
bench-instructions: $(STAMP)
	@command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
	$(PY) bench/instructions.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
