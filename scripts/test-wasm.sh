#!/usr/bin/env bash
# Runs the CPU backend's WebAssembly kernels (SIMD128 and portable) against the reference in
# Node: web/tests/cpu_kernels.rs, built for wasm32-unknown-unknown with SIMD128 on, through
# wasm-bindgen-test-runner (installed with wasm-bindgen-cli, at Cargo.lock's version).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+simd128"
# The page's build directory and profile, so the two builds share their dependencies.
exec cargo test --manifest-path "$root/Cargo.toml" -p xception-web --test cpu_kernels \
    --target wasm32-unknown-unknown --profile web --target-dir "$root/target/web" "$@"
