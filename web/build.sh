#!/usr/bin/env bash
# Builds the page's WebAssembly modules into web/pkg, beside the weights and the sample photos
# the page loads: the single-threaded build (stable Rust) in web/pkg and the threaded one, whose
# CPU backend runs on Web Workers, in web/pkg/threads (`--single-threaded` leaves it out). Serve
# the result with node web/tools/serve.mjs (cross-origin isolated, so threads may run) or any
# static server (one thread).
#
# Needs the wasm32 target (rustup target add wasm32-unknown-unknown), wasm-bindgen-cli at
# exactly the wasm-bindgen version in Cargo.lock, and for the threaded build the pinned nightly
# toolchain below with rust-src (the command to install what is missing is printed).
set -euo pipefail
web="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$web")"
out="$web/pkg"

# WebAssembly threads need a standard library built with atomics, which only a nightly
# toolchain rebuilds (`-Z build-std`); this one is pinned so that the build stays the same.
nightly="nightly-2026-05-20"
threads=1
case "${1:-}" in
    "") ;;
    --single-threaded) threads=0 ;;
    *) echo "usage: web/build.sh [--single-threaded]" >&2; exit 2 ;;
esac

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
nightly_ready() {
    local sysroot
    sysroot="$(rustup run "$nightly" rustc --print sysroot 2>/dev/null)" &&
        [ -d "$sysroot/lib/rustlib/src/rust/library" ] &&
        rustup target list --installed --toolchain "$nightly" | grep -qx wasm32-unknown-unknown
}
if [ "$threads" = 1 ] && ! nightly_ready; then
    echo "error: the threaded build needs $nightly with rust-src and the wasm32 target; run:" \
        "rustup toolchain install $nightly --profile minimal --component rust-src" \
        "--target wasm32-unknown-unknown (or build with --single-threaded)" >&2
    exit 1
fi

# A target directory of its own, so that this build never waits on (or invalidates) the native one.
# SIMD128 (in every browser with WebGPU, and Firefox and Safari without) for the CPU backend.
target="$root/target/web"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+simd128" cargo build --manifest-path "$root/Cargo.toml" -p xception-web --target wasm32-unknown-unknown \
    --profile web --target-dir "$target"
rm -rf "$out"
wasm-bindgen --target web --out-dir "$out" "$target/wasm32-unknown-unknown/web/xception_web.wasm"

if [ "$threads" = 1 ]; then
    # Shared memory (up to 4 GiB, the most wasm32 addresses) that the page hands to the
    # workers wasm-bindgen-rayon starts, and the thread-local storage exports each worker
    # initialises.
    link=""
    for arg in --shared-memory --max-memory=4294967296 --import-memory --export=__wasm_init_tls \
        --export=__tls_size --export=__tls_align --export=__tls_base; do
        link="$link -C link-arg=$arg"
    done
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+simd128,+atomics,+bulk-memory$link" \
        cargo "+$nightly" build --manifest-path "$root/Cargo.toml" -p xception-web --features threads \
        --target wasm32-unknown-unknown --profile web --target-dir "$root/target/web-threads" \
        -Z build-std=panic_abort,std
    wasm-bindgen --target web --out-dir "$out/threads" \
        "$root/target/web-threads/wasm32-unknown-unknown/web/xception_web.wasm"
fi
cp "$root/weights/xception_kitchenware.safetensors" "$out/"
mkdir -p "$out/samples"
cp "$root"/samples/*.jpg "$out/samples/"
echo "built $out ($(du -h "$out/xception_web_bg.wasm" | cut -f1) of WebAssembly$(
    [ "$threads" = 1 ] && echo ", threaded: $(du -h "$out/threads/xception_web_bg.wasm" | cut -f1)"))"
