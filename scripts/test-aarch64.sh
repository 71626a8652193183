#!/usr/bin/env bash
# Runs the fast CPU backend's kernel tests for aarch64 (the NEON kernels, and the portable ones
# as built for Arm) on an x86_64 Debian or Ubuntu machine: cross-built with Debian's aarch64
# GCC as the linker, run under qemu-user. `tests/cpu_ops.rs` takes about half a minute under
# qemu; `--network` adds the whole-network family test of `tests/network.rs` (about 24 minutes
# on a 2-vCPU Zen 4). Not part of `scripts/test.sh`, whose time it would add to.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/system-packages.sh
install_missing gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
    rustup target add aarch64-unknown-linux-gnu

export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
target=(--release --target aarch64-unknown-linux-gnu)
cargo test "${target[@]}" --test cpu_ops
if [ "${1:-}" = "--network" ]; then
    cargo test "${target[@]}" --test network every_cpu_kernel_family
fi
