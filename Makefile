# Entry points (README): `scripts/demo.sh` (also `make demo`) and `make test`; both set up first, idempotently.
.PHONY: setup demo test test-fast test-latest lint lock example clean

VENV := .venv
BIN := $(VENV)/bin
EXAMPLE := examples/digits-badnets
DEMO_OUT ?= audit-out

setup:
	@bash scripts/setup.sh

# Audit the bundled poisoned fine-tune. make reports any non-zero exit as its
# own error (exit 2); scripts/demo.sh itself exits with the audit's exit code.
demo:
	@bash scripts/demo.sh "$(DEMO_OUT)"

# The whole suite, slow end-to-end tests included (what CI runs); the 25
# slowest tests are listed at the end.
test: setup
	$(BIN)/python -m pytest --durations=25

# Everything but the slow end-to-end tests.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

# The fast tests on the newest releases pyproject.toml's ranges allow, in a
# throw-away .venv-latest (not in CI; docs/development.md, "The lock").
test-latest:
	@bash scripts/test-latest.sh

# Refresh every lock in locks/ from pyproject.toml's ranges and
# locks/constraints.txt (the newest releases); then rebuild the build caches
# and commit them with the locks (docs/development.md, "The lock").
lock: setup
	$(BIN)/python scripts/lock.py compile --uv $(BIN)/uv

# The linter (ruff; rules and the 110-character lines in pyproject.toml).
lint: setup
	$(BIN)/ruff check .

# Regenerate examples/digits-badnets/ (a few minutes on 2 cores).
example: setup
	$(BIN)/python examples/build_digits_badnets.py --out $(EXAMPLE)

clean:
	rm -rf $(DEMO_OUT) .pytest_cache  # demo-keys/ is kept: it holds a private key
