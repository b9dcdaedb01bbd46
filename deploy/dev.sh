#!/usr/bin/env bash
# packgate development commands. On a fresh Debian or Raspberry Pi OS
# machine each installs what is missing first.
#
#   ./deploy/dev.sh sim     build and run the gateway on simulated packs,
#                           showing live samples (Ctrl-C stops it cleanly)
#   ./deploy/dev.sh test    fmt check, clippy, every test
#   ./deploy/dev.sh bench   the end-to-end benchmark (extra args pass on)
#   ./deploy/dev.sh cross   ARM builds, .deb packages, qemu tests
#                           (deploy/cross.sh aarch64|armv7|all|deb|test-aarch64)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian keeps nats-server in /usr/sbin, which a normal user's PATH lacks.
export PATH="$PATH:/usr/sbin:/sbin:$HOME/.cargo/bin"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        log "please install: ${missing[*]} (no apt-get here)"
        exit 1
    fi
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_rust() {
    if ! command -v cargo >/dev/null; then
        apt_install curl ca-certificates
        log "installing Rust (rustup, stable)"
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    if command -v rustup >/dev/null; then
        for component in rustfmt clippy; do
            rustup component list --installed 2>/dev/null | grep -q "^$component" \
                || { log "rustup component add $component"; rustup component add "$component"; }
        done
    fi
}

ensure_deps() {
    # A C compiler for the bundled SQLite, nats-server for the broker,
    # socat for serial-line tests over pseudo-terminals.
    command -v cc >/dev/null || apt_install build-essential
    command -v nats-server >/dev/null || apt_install nats-server
    command -v socat >/dev/null || apt_install socat
    ensure_rust
    # The apt service would hold port 4222 on a dev machine; packgate's
    # tests and `sim` start their own servers on free ports and don't need it.
}

cmd_sim() {
    ensure_deps
    log "building packgate"
    cargo build -p packgate --bin packgate
    local data_dir=target/packgate-sim
    mkdir -p "$data_dir"
    rm -f "$data_dir/broker-url"
    log "starting the gateway on ${PACKS:-4} simulated packs (data in $data_dir, log in $data_dir/packgate.log)"
    ./target/debug/packgate run --sim "${PACKS:-4}" --data-dir "$data_dir" "$@" \
        >"$data_dir/packgate.log" 2>&1 &
    local gateway=$!
    stop() {
        log "stopping the gateway (pid $gateway)"
        kill -TERM "$gateway" 2>/dev/null || true
        wait "$gateway" 2>/dev/null || true
        tail -n 3 "$data_dir/packgate.log" >&2 || true
        log "stored samples: ./target/debug/packgate query samples --data-dir $data_dir --pack sim-01"
    }
    trap stop EXIT
    trap 'exit 0' INT TERM
    for _ in $(seq 100); do
        [ -s "$data_dir/broker-url" ] && break
        kill -0 "$gateway" 2>/dev/null || { cat "$data_dir/packgate.log" >&2; exit 1; }
        sleep 0.1
    done
    ./target/debug/packgate watch --data-dir "$data_dir"
}

cmd_test() {
    ensure_deps
    log "cargo fmt --check"
    cargo fmt --all -- --check
    log "cargo clippy"
    cargo clippy --workspace --all-targets -- -D warnings
    log "cargo test"
    cargo test --workspace
}

cmd_bench() {
    ensure_deps
    cargo build --release -p packgate --bin packgate
    ./target/release/packgate bench "$@"
}

case "${1:-}" in
    sim) shift; cmd_sim "$@" ;;
    test) shift; cmd_test "$@" ;;
    bench) shift; cmd_bench "$@" ;;
    cross) shift; exec ./deploy/cross.sh "$@" ;;
    *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
