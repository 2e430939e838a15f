#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test. Needs the Rust toolchain and Python 3
# (the STIX test validates bundles with the `stix2` library, installed here from PyPI into a
# virtualenv under ~/.cache/distillguard). Builds go to ~/.cache/distillguard/target so that
# repeated runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/distillguard/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n==> %s\n' "$*"; }
step "test clients: Python stix2 in ~/.cache/distillguard/venv-clients"
venv="$HOME/.cache/distillguard/venv-clients"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import stix2" 2>/dev/null || "$venv/bin/pip" install -q stix2
export DG_PYTHON="$venv/bin/python" DG_REQUIRE_CLIENTS=1
step "cargo fmt --check"
cargo fmt --all --check
step "cargo test (build and run)"
cargo test --workspace --all-targets --locked
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
