# Vultrino's tasks. `just` runs the tests and the linters.
# The virtualenvs come from `bash scripts/setup.sh` (or `just setup`).

set shell := ["bash", "-euo", "pipefail", "-c"]

py := ".venv/bin/python"
py310 := ".venv310/bin/python"
# the WIT-world check runs when scripts/setup.sh could fetch the WASI adapter
adapter := 'if [ -f .cache/wasi_snapshot_preview1.reactor.wasm ]; then export VULTRINO_WASI_ADAPTER="$PWD/.cache/wasi_snapshot_preview1.reactor.wasm"; fi;' 

# tests (wasmtime, Python 3.11) and lint
default: test lint

# install system packages, both venvs and the Rust wasm toolchain
setup:
    bash scripts/setup.sh

# the whole suite on Python 3.11 with the default engine (wasmtime)
test *ARGS:
    . scripts/rust-env.sh 2>/dev/null; {{adapter}} {{py}} -m pytest -q {{ARGS}}

# the whole suite again on Python 3.10 with wasmer (the conformance suite runs both engines)
test-wasmer *ARGS:
    . scripts/rust-env.sh 2>/dev/null; {{adapter}} VULTRINO_TEST_ENGINE=wasmer {{py310}} -m pytest -q {{ARGS}}

# ruff (lint + format check) and mypy --strict
lint:
    {{py}} -m ruff check .
    {{py}} -m ruff format --check .
    {{py}} -m mypy

# everything CI runs: both engines, lint, and the benchmarks with tiny iteration counts
ci: test test-wasmer lint bench-smoke

# benchmarks: one table on stdout, the same figures in bench-results/latest.json
bench *ARGS:
    . scripts/rust-env.sh 2>/dev/null; {{py}} benchmarks/run.py {{ARGS}}

# the benchmark harness with tiny iteration counts, to keep it working
bench-smoke:
    {{py}} benchmarks/run.py --smoke

# longer fuzzing runs (hypothesis), beyond CI's fixed seed and example count
fuzz:
    VULTRINO_FUZZ_EXAMPLES=20000 {{py}} -m pytest -q tests/fuzz -p no:randomly

# rebuild the first-party plugins and the template with the offline Rust toolchain
plugins:
    bash scripts/build-plugins.sh

# a demo on a throwaway home
demo:
    .venv/bin/vultrino demo
