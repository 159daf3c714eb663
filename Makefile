# Every target brings .venv up to date itself: a fresh clone needs only `make test` or `make run`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test run bench fuzz lint typecheck clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests fuzz bench examples
	$(BIN)/ruff format --check src tests fuzz bench examples

typecheck: $(STAMP)
	$(BIN)/mypy src

test: lint typecheck
	$(BIN)/pytest

# Validates the example config, then serves it with two demo upstreams until Ctrl-C.
run: $(STAMP)
	$(BIN)/gwcore check examples/gateway.yaml
	$(BIN)/python examples/run_demo.py

# Router, JWT and rate-limit benchmarks, then the proxy benchmarks (gwcore vs nginx vs
# direct, and plain vs JWT vs rate-limited routes, with wrk;
# bench/setup.sh installs wrk, nginx-light and nghttp2-client from Debian when missing).
bench: $(STAMP)
	$(BIN)/python bench/bench_router.py
	$(BIN)/python bench/bench_jwt.py
	$(BIN)/python bench/bench_limits.py
	sh bench/setup.sh
	$(BIN)/python bench/bench_proxy.py
	$(BIN)/python bench/bench_policy.py

# Longer hypothesis runs: the router against the reference matcher, then the policy
# properties (token forgery, path normalization, the engine's JWKS parking).
# On demand, not in CI.
fuzz: $(STAMP)
	$(BIN)/python fuzz/fuzz_router.py
	$(BIN)/python fuzz/fuzz_policy.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
