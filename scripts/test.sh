#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test. Needs the Rust toolchain and Python 3;
# installs the real clients the tests drive: the `stix2` library from PyPI into a virtualenv
# under ~/.cache/distillguard, and Debian's `chromium` (apt, as root or with sudo) to render the
# HTML report; and the servers the online tests talk to: Debian's `nats-server` (started here on
# 127.0.0.1 with JetStream, stopped on exit) and `nginx` (started by the test itself with its own
# config). Builds go to ~/.cache/distillguard/target so that repeated runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/distillguard/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n==> %s\n' "$*"; }
step "test clients: Python stix2 in ~/.cache/distillguard/venv-clients"
venv="$HOME/.cache/distillguard/venv-clients"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import stix2" 2>/dev/null || "$venv/bin/pip" install -q stix2
step "test clients and servers: Debian chromium, nats-server, nginx"
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v nats-server >/dev/null || missing+=(nats-server)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
step "nats-server with JetStream on 127.0.0.1"
nats_dir="$(mktemp -d)"
nats_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$nats_dir" >"$nats_dir/server.log" 2>&1 &
nats_pid=$!
trap 'kill $nats_pid 2>/dev/null; rm -rf "$nats_dir"' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break
    sleep 0.1
done
export DG_NATS_URL="nats://127.0.0.1:$nats_port" DG_NGINX=/usr/sbin/nginx
export DG_PYTHON="$venv/bin/python" DG_CHROMIUM="$(command -v chromium)" DG_REQUIRE_CLIENTS=1
step "cargo fmt --check"
cargo fmt --all --check
step "cargo test (build and run)"
cargo test --workspace --all-targets --locked
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
