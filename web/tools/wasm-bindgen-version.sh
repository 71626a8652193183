#!/usr/bin/env bash
# Prints the wasm-bindgen version Cargo.lock pins: wasm-bindgen-cli must be exactly this version.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
grep -A1 '^name = "wasm-bindgen"$' "$root/Cargo.lock" | sed -n 's/^version = "\(.*\)"$/\1/p'
