#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test. Needs the Rust toolchain and Python 3;
# installs the real clients the tests drive: the `stix2` library from PyPI into a virtualenv
# under ~/.cache/distillguard, and Debian's `chromium` (apt, as root or with sudo) to render the
# HTML report. Builds go to ~/.cache/distillguard/target so that repeated runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/distillguard/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n==> %s\n' "$*"; }
step "test clients: Python stix2 in ~/.cache/distillguard/venv-clients"
venv="$HOME/.cache/distillguard/venv-clients"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import stix2" 2>/dev/null || "$venv/bin/pip" install -q stix2
step "test clients: Debian chromium (headless, for the HTML report)"
if ! command -v chromium >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
export DG_PYTHON="$venv/bin/python" DG_CHROMIUM="$(command -v chromium)" DG_REQUIRE_CLIENTS=1
step "cargo fmt --check"
cargo fmt --all --check
step "cargo test (build and run)"
cargo test --workspace --all-targets --locked
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
