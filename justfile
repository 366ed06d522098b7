# Vultrino's tasks. `just` runs the tests and the linters.
# The virtualenvs come from `bash scripts/setup.sh` (or `just setup`).

set shell := ["bash", "-euo", "pipefail", "-c"]

py := ".venv/bin/python"
py310 := ".venv310/bin/python"
engine_tests := "tests/integration/test_runtime_conformance.py tests/integration/test_component_conformance.py tests/integration/test_runtime_cache.py tests/integration/test_wasmer_engine.py tests/integration/test_wasmer_threads.py tests/unit/test_instrument.py tests/integration/test_first_party_plugins.py tests/integration/test_sdk_template.py tests/integration/test_guest_sdk.py tests/integration/test_installer_cargo.py tests/e2e tests/reliability/test_hostile_corpus.py tests/reliability/test_redteam_runtime.py tests/reliability/test_redteam_inputs.py tests/reliability/test_redteam_installer.py"
# the WIT-world check (tests/integration/test_sdk_template.py) runs when scripts/setup.sh could
# fetch the WASI adapter; it uses the 3.11 venv's wasm-tools in either leg
adapter := 'if [ -f .cache/wasi_snapshot_preview1.reactor.wasm ]; then export VULTRINO_WASI_ADAPTER="$PWD/.cache/wasi_snapshot_preview1.reactor.wasm"; fi; if [ -x .venv/bin/wasm-tools ]; then export VULTRINO_WASM_TOOLS="$PWD/.venv/bin/wasm-tools"; fi;' 

# tests (wasmtime, Python 3.11) and lint
default: test lint

# install system packages, both venvs and the Rust wasm toolchain
setup:
    bash scripts/setup.sh

# the whole suite on Python 3.11 with the default engine (wasmtime)
test *ARGS:
    . scripts/rust-env.sh 2>/dev/null; {{adapter}} {{py}} -m pytest -q -n 2 {{ARGS}}

# the engine-dependent tests and the cargo builds on Python 3.10 with wasmer (the conformance
# suite and the template test run both engines there)
test-wasmer *ARGS:
    . scripts/rust-env.sh 2>/dev/null; {{adapter}} VULTRINO_TEST_ENGINE=wasmer {{py310}} -m pytest -q -n 2 -m "not conformance" {{engine_tests}} {{ARGS}}

# ruff (lint + format check) and mypy --strict
lint:
    {{py}} -m ruff check .
    {{py}} -m ruff format --check .
    {{py}} -m mypy

# everything CI runs: lint, the benchmarks with tiny iteration counts, the suite on
# 3.11/wasmtime (the cargo builds run once, in the next leg; the MCP conformance suite must run
# there, not skip), then the engine-dependent suite and the cargo builds on 3.10/wasmer, where
# the WIT-world check must run (not skip)
ci: lint bench-smoke
    . scripts/rust-env.sh 2>/dev/null; {{adapter}} VULTRINO_REQUIRE_CONFORMANCE=1 {{py}} -m pytest -q -n 2 -m "not cargo"
    VULTRINO_REQUIRE_WIT_CHECK=1 {{just_executable()}} test-wasmer

# benchmarks: one table on stdout, the same figures in bench-results/latest.json
bench *ARGS:
    . scripts/rust-env.sh 2>/dev/null; {{py}} benchmarks/run.py {{ARGS}}

# the benchmark harness with tiny iteration counts, to keep it working
bench-smoke:
    {{py}} benchmarks/run.py --smoke

# longer fuzzing runs (hypothesis), beyond CI's fixed seed and example count
fuzz:
    VULTRINO_FUZZ_EXAMPLES=20000 {{py}} -m pytest -q tests/fuzz tests/reliability/test_fuzz_abi.py

# reproduce every figure of docs/security.md (--quick for a short run; --engine wasmer under .venv310)
evidence *ARGS:
    {{py}} scripts/evidence.py {{ARGS}}

# rebuild the first-party plugins and the template with the offline Rust toolchain
plugins:
    bash scripts/build-plugins.sh

# a demo on a throwaway home
demo:
    .venv/bin/vultrino demo

# wrap a Rust plugin's core module into a WASI 0.2 component (wasm-tools + the preview-1 adapter)
component MODULE OUT:
    PATH="$PWD/.venv/bin:$PATH" bash scripts/rust-component.sh {{MODULE}} {{OUT}}
