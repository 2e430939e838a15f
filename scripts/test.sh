#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test. Needs only the Rust toolchain.
# Builds go to ~/.cache/distillguard/target so that repeated runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/distillguard/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n==> %s\n' "$*"; }
step "cargo fmt --check"
cargo fmt --all --check
step "cargo test (build and run)"
cargo test --workspace --all-targets --locked
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
