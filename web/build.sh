#!/usr/bin/env bash
# Builds the page's WebAssembly module into web/pkg, beside the weights and the sample photos the
# page loads. Serve the result with any static server: python3 -m http.server -d web
#
# Needs the wasm32 target (rustup target add wasm32-unknown-unknown) and wasm-bindgen-cli at
# exactly the wasm-bindgen version in Cargo.lock (the command to install it is printed if not).
set -euo pipefail
web="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$web")"
out="$web/pkg"

version="$("$web/tools/wasm-bindgen-version.sh")"
if ! installed="$(wasm-bindgen --version 2>/dev/null)"; then
    echo "error: wasm-bindgen is not installed; run: cargo install wasm-bindgen-cli --version $version" >&2
    exit 1
fi
if [ "$installed" != "wasm-bindgen $version" ]; then
    echo "error: $installed is installed but Cargo.lock has wasm-bindgen $version; run:" \
        "cargo install wasm-bindgen-cli --version $version --force" >&2
    exit 1
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "error: the wasm32 target is missing; run: rustup target add wasm32-unknown-unknown" >&2
    exit 1
fi

# A target directory of its own, so that this build never waits on (or invalidates) the native one.
# SIMD128 (in every browser with WebGPU, and Firefox and Safari without) for the CPU backend.
target="$root/target/web"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+simd128" cargo build --manifest-path "$root/Cargo.toml" -p xception-web --target wasm32-unknown-unknown \
    --profile web --target-dir "$target"
rm -rf "$out"
wasm-bindgen --target web --out-dir "$out" "$target/wasm32-unknown-unknown/web/xception_web.wasm"
cp "$root/weights/xception_kitchenware.safetensors" "$out/"
mkdir -p "$out/samples"
cp "$root"/samples/*.jpg "$out/samples/"
echo "built $out ($(du -h "$out/xception_web_bg.wasm" | cut -f1) of WebAssembly)"
