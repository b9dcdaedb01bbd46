#!/usr/bin/env bash
# packgate development commands. On a fresh Debian or Raspberry Pi OS
# machine each installs what is missing first.
#
#   ./deploy/dev.sh sim     build and run the gateway on simulated packs,
#                           showing live samples (Ctrl-C stops it cleanly)
#   ./deploy/dev.sh test    fmt check, clippy, every test, a short run of
#                           every fuzz target
#   ./deploy/dev.sh fuzz TARGET [SECONDS]
#                           one fuzz target for SECONDS (default 3600)
#   ./deploy/dev.sh fuzz-smoke   only the short run of every fuzz target
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
    # Self-contained: not the box's /etc/packgate/packgate.toml (an empty
    # PACKGATE_CONFIG means the built-in defaults); --config still works.
    export PACKGATE_CONFIG=""
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
    # A real Prometheus scrapes /metrics in the tests.
    command -v prometheus >/dev/null || [ -x /usr/bin/prometheus ] || apt_install prometheus
    # ... and a real MQTT broker takes the Home Assistant discovery.
    [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || apt_install mosquitto
    # ... and a real headless browser loads the local web page.
    command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || apt_install chromium
    log "cargo fmt --check"
    cargo fmt --all -- --check
    log "cargo clippy"
    cargo clippy --workspace --all-targets -- -D warnings
    log "cargo test"
    # The tests' gateways bring their own configurations; on a box with
    # packgate installed, /etc/packgate/packgate.toml must not be read.
    PACKGATE_CONFIG="" cargo test --workspace
    cmd_fuzz_smoke
}

# The fuzz targets (fuzz/, outside the workspace) need cargo-fuzz and the
# compiler's nightly flags: a nightly toolchain when rustup has or can fetch
# one, else stable with RUSTC_BOOTSTRAP=1. libFuzzer is C++ (c++ from
# build-essential). Sets FUZZ_CARGO; fails when nothing can build them.
FUZZ_CARGO=()
FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"
fuzz_setup() {
    [ ${#FUZZ_CARGO[@]} -gt 0 ] && return 0
    command -v c++ >/dev/null || return 1
    if ! command -v cargo-fuzz >/dev/null; then
        log "cargo install cargo-fuzz"
        cargo install --locked cargo-fuzz >/dev/null 2>&1 || return 1
    fi
    if command -v rustup >/dev/null; then
        if ! rustup run nightly rustc -V >/dev/null 2>&1; then
            log "rustup toolchain install nightly --profile minimal"
            rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || true
        fi
        if rustup run nightly rustc -V >/dev/null 2>&1; then
            FUZZ_CARGO=(cargo +nightly)
            return 0
        fi
    fi
    if RUSTC_BOOTSTRAP=1 rustc -Z unstable-options -V >/dev/null 2>&1; then
        FUZZ_CARGO=(env RUSTC_BOOTSTRAP=1 cargo)
        return 0
    fi
    return 1
}

# Runs fuzz target $1 for $2 seconds on its committed corpus (fuzz/corpus/$1, never
# written) and what earlier runs found (fuzz/target/corpus/$1). Prints one
# summary line; on a crash, the log's end and where the reproducer is.
fuzz_run() {
    local target=$1 seconds=$2
    local work=fuzz/target/corpus/$target log=fuzz/target/logs/$target.log
    mkdir -p "$work" fuzz/target/logs
    local start=$SECONDS
    if ! "${FUZZ_CARGO[@]}" fuzz run -s "$FUZZ_SANITIZER" "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        log "fuzz target $target failed: reproducer in fuzz/artifacts/$target/, log in $log"
        return 1
    fi
    local runs last
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)
    printf '%s: %s runs in %d s, %s, no crash\n' "$target" "${runs:-?}" $((SECONDS - start)) "${last:-?}"
}

# Builds every fuzz target and runs each for FUZZ_SMOKE_SECONDS (5). A
# crash fails; a machine that cannot build fuzz targets at all skips.
cmd_fuzz_smoke() {
    if ! fuzz_setup; then
        log "fuzz targets skipped: no toolchain here builds them (see Fuzzing in the README)"
        return 0
    fi
    log "fuzz targets: build, and run each for ${FUZZ_SMOKE_SECONDS:-5} s"
    mkdir -p fuzz/target/logs
    if ! "${FUZZ_CARGO[@]}" fuzz build -s "$FUZZ_SANITIZER" >fuzz/target/logs/build.log 2>&1; then
        tail -n 40 fuzz/target/logs/build.log >&2
        log "fuzz targets do not build (log in fuzz/target/logs/build.log)"
        return 1
    fi
    local target
    for target in $("${FUZZ_CARGO[@]}" fuzz list); do
        fuzz_run "$target" "${FUZZ_SMOKE_SECONDS:-5}"
    done
}

cmd_fuzz() {
    local target=${1:?usage: dev.sh fuzz TARGET [SECONDS]} seconds=${2:-3600}
    ensure_deps
    fuzz_setup || { log "no toolchain here builds fuzz targets (see Fuzzing in the README)"; exit 1; }
    fuzz_run "$target" "$seconds"
}

cmd_bench() {
    ensure_deps
    cargo build --release -p packgate --bin packgate
    ./target/release/packgate bench "$@"
}

case "${1:-}" in
    sim) shift; cmd_sim "$@" ;;
    test) shift; cmd_test "$@" ;;
    fuzz) shift; cmd_fuzz "$@" ;;
    fuzz-smoke) shift; ensure_deps; cmd_fuzz_smoke ;;
    bench) shift; cmd_bench "$@" ;;
    cross) shift; exec ./deploy/cross.sh "$@" ;;
    *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
