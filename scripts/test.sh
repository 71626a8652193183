#!/usr/bin/env bash
# Sets up what the tests need on a Debian or Ubuntu machine, installing only what is missing,
# then runs them all: `cargo test --release`, the CPU kernels compiled to WebAssembly
# (`scripts/test-wasm.sh`), the weights converter's tests and the Python package's tests. CI
# (`.ci/run`) runs exactly this.
#
# Needs: Rust (rustup), Node.js 20 or newer, and root or sudo where a system package is
# missing. GPU tests run on Mesa's software Vulkan driver (lavapipe), `xception check` also on
# its software OpenGL (llvmpipe through EGL), the browser test in headless Chromium on its
# bundled SwiftShader; they fail, never skip, without them.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*" >&2; }

# System packages: Mesa's software Vulkan and OpenGL drivers, Chromium, Python's venv.
source scripts/system-packages.sh
install_test_packages

command -v cargo >/dev/null || {
    echo "error: Rust is missing; install it from https://rustup.rs, then run $0 again" >&2
    exit 1
}
node_major="$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/')"
if [ -z "$node_major" ] || [ "$node_major" -lt 20 ]; then
    echo "error: the browser test drives Chromium from Node.js 20 or newer" \
        "(found: ${node_major:-none}); install it (https://nodejs.org), then run $0 again" >&2
    exit 1
fi

# The browser test (tests/browser.rs) builds the page for wasm32 with wasm-bindgen-cli at the
# version Cargo.lock pins.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    step "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
fi
# Its threaded build needs the nightly toolchain web/build.sh pins, with rust-src (build-std).
nightly="$(sed -n 's/^nightly="\(.*\)"$/\1/p' web/build.sh)"
if ! rustup run "$nightly" rustc --version >/dev/null 2>&1 ||
    ! rustup component list --installed --toolchain "$nightly" | grep -q '^rust-src' ||
    ! rustup target list --installed --toolchain "$nightly" | grep -qx wasm32-unknown-unknown; then
    step "installing $nightly with rust-src and the wasm32 target (the page's threaded build)"
    rustup toolchain install "$nightly" --profile minimal --component rust-src \
        --target wasm32-unknown-unknown
fi
wasm_bindgen="$(web/tools/wasm-bindgen-version.sh)"
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wasm_bindgen" ]; then
    step "installing wasm-bindgen-cli $wasm_bindgen"
    # Its own lock file first; a registry that has since dropped a version it pins (a yanked
    # crate) gets the newest compatible versions instead.
    cargo install -q wasm-bindgen-cli --version "$wasm_bindgen" --locked --force ||
        cargo install -q wasm-bindgen-cli --version "$wasm_bindgen" --force
fi

# Mesa's device-selection Vulkan layer complains without a runtime directory (the CLI and the
# Python module turn it off there; the test binaries and Chromium do not): give them one.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
    XDG_RUNTIME_DIR="$(mktemp -d)"
    export XDG_RUNTIME_DIR
fi

step "the page's driver (Playwright, web/tools/package-lock.json)"
npm ci --prefix web/tools --no-audit --no-fund

step "cargo test --release"
cargo test --release

step "the CPU backend's WebAssembly kernels (SIMD128) against the reference, in Node"
scripts/test-wasm.sh

# One virtual environment for the Python tests, kept under target/ between runs.
venv="target/test-venv"
if [ ! -x "$venv/bin/python" ]; then
    step "creating the Python test environment ($venv)"
    python3 -m venv "$venv"
fi

step "the weights converter's tests (synthetic Keras and timm checkpoints)"
"$venv/bin/pip" install -q -r weights/requirements-test.txt
"$venv/bin/python" -m pytest -q weights/

# `pip install ./python` builds the wheel (maturin); its tests compare it with the CLI that
# `cargo test --release` built, alone and in Ray Data's map_batches, and a converted timm
# checkpoint with timm's own outputs (tests/golden/timm/) on every backend.
step "the Python package's tests"
"$venv/bin/pip" install -q "./python[test]"
"$venv/bin/python" -m pytest -q python/tests

step "all tests passed"
