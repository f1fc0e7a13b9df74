# kdumpkit — the two set-up commands are `make demo` and `make test`; both install what they need.
PY := .venv/bin/python

.PHONY: setup oracles test test-fast lint demo e2e bench clean

setup:
	@scripts/install-deps.sh

# Debian sid's makedumpfile/crash and the fixture kernel's DWARF vmlinux, cached in .cache/oracle
oracles:
	@scripts/fetch-oracles.sh

# The real kdump cycle, big guests and live guests run on Debian's 6.1 and 6.12 kernels under QEMU.
# Tests whose testbed inputs are not built (make e2e builds them) skip; the run ends with one
# "NOT CHECKED" line per skipped group and the command that checks it.
test: setup oracles
	$(PY) -m ruff check --no-cache kdumpkit tests bench
	$(PY) -m ruff format --check --no-cache kdumpkit tests bench
	KDUMPKIT_E2E_KERNELS="6.1 6.12" $(PY) -m pytest -q -ra

test-fast: setup
	$(PY) -m pytest -q -ra -m "not slow and not e2e"

lint: setup
	$(PY) -m ruff check --no-cache kdumpkit tests bench
	$(PY) -m ruff format --check --no-cache kdumpkit tests bench
	$(PY) -m mypy

demo: setup
	@testbed/demo.sh

# Every test on every input: the testbed builds what is missing into .cache/oracle (kdump
# cycles and QEMU dumps of each kernel, crash 9.0.2's outputs; cached by package version),
# and the arm64 dumps and their oracles into .cache/testbed-arm64 (once: ~70 min, mostly
# crash under qemu-user); then the whole suite runs, where a missing input fails instead of
# skipping (the real-system, Debian 11 and arm64 cycles boot their own guests).
CACHE_DIR := $(or $(KDUMPKIT_CACHE),.cache)
e2e: setup oracles
	$(PY) testbed/build.py
	@test -f $(CACHE_DIR)/testbed-arm64/.built || \
		{ SKIP_APT=1 testbed/arm64/run-all.sh && touch $(CACHE_DIR)/testbed-arm64/.built; }
	KDUMPKIT_STRICT=1 KDUMPKIT_E2E_KERNELS="6.1 6.12" $(PY) -m pytest -q -ra

bench: setup oracles
	$(PY) bench/run.py

clean:
	rm -rf .venv .cache build *.egg-info
