#!/usr/bin/env bash
# packgate ARM builds without Docker. On a plain Debian (or Raspberry Pi OS)
# machine each command installs what is missing first.
#
#   ./deploy/cross.sh aarch64        release build for 64-bit Raspberry Pi OS
#   ./deploy/cross.sh armv7          release build for 32-bit Raspberry Pi OS
#   ./deploy/cross.sh all            both (the default)
#   ./deploy/cross.sh deb            both, then arm64 and armhf .deb packages
#   ./deploy/cross.sh test-aarch64   unit tests for aarch64 under qemu-user
#   ./deploy/cross.sh check FILE     the GLIBC check alone, on any binary
#
# Builds link with cargo-zigbuild (zig from PyPI's ziglang) against glibc
# GLIBC_MAX (2.31, Debian bullseye's; bookworm has 2.36), so one binary
# runs on Raspberry Pi OS bullseye and bookworm. Debian bookworm's own
# cross gcc links against glibc 2.36 and would not run on bullseye;
# TOOLCHAIN=gcc uses it anyway (for a bookworm-only box) and the GLIBC check
# then tells the truth about it. Every binary is checked: a GLIBC symbol
# version above GLIBC_MAX fails the build.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/sbin:/sbin:$HOME/.cargo/bin"

GLIBC_MAX="${GLIBC_MAX:-2.31}"
TOOLCHAIN="${TOOLCHAIN:-zig}"
# zig from PyPI lives in a virtualenv of its own: Debian's Python refuses
# `pip install` into the system (PEP 668).
ZIG_VENV="${ZIG_VENV:-$HOME/.cache/packgate/zig-venv}"
# The newest ziglang known to work with cargo-zigbuild here; override to try
# another.
ZIGLANG_SPEC="${ZIGLANG_SPEC:-ziglang}"
# Cargo features of the box's build: SocketCAN for CAN HATs (can0).
FEATURES="${FEATURES:-socketcan}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[1;31mxx  %s\033[0m\n' "$*" >&2; exit 1; }

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
    command -v apt-get >/dev/null || die "please install: ${missing[*]} (no apt-get here)"
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The Rust target triple of an architecture name.
triple_of() {
    case "$1" in
        aarch64 | arm64) echo aarch64-unknown-linux-gnu ;;
        armv7 | armhf) echo armv7-unknown-linux-gnueabihf ;;
        *) die "unknown architecture '$1' (aarch64 or armv7)" ;;
    esac
}

# Debian's name of an architecture, and of its cross gcc prefix.
deb_arch_of() {
    case "$1" in
        aarch64-unknown-linux-gnu) echo arm64 ;;
        armv7-unknown-linux-gnueabihf) echo armhf ;;
    esac
}
gcc_prefix_of() {
    case "$1" in
        aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
        armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
    esac
}

ensure_rust() {
    command -v cargo >/dev/null || {
        apt_install curl ca-certificates
        log "installing Rust (rustup, stable)"
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    }
    command -v cc >/dev/null || apt_install build-essential
    command -v readelf >/dev/null || apt_install binutils
}

ensure_target() {
    local triple=$1
    command -v rustup >/dev/null || die "rustup is needed to add the $triple target"
    rustup target list --installed | grep -qx "$triple" || {
        log "rustup target add $triple"
        rustup target add "$triple"
    }
}

ensure_gcc_cross() {
    local prefix deb
    prefix=$(gcc_prefix_of "$1")
    deb=$(deb_arch_of "$1")
    apt_install "gcc-$prefix" "libc6-dev-$deb-cross"
}

ensure_zigbuild() {
    if ! command -v zig >/dev/null && ! [ -x "$ZIG_VENV/bin/python3" ]; then
        apt_install python3 python3-venv
        log "installing zig from PyPI ($ZIGLANG_SPEC) into $ZIG_VENV"
        python3 -m venv "$ZIG_VENV"
        "$ZIG_VENV/bin/pip" install -q "$ZIGLANG_SPEC"
    fi
    # cargo-zigbuild runs `python3 -m ziglang` when no `zig` is on PATH:
    # the virtualenv's python3 comes first.
    [ -x "$ZIG_VENV/bin/python3" ] && export PATH="$ZIG_VENV/bin:$PATH"
    command -v cargo-zigbuild >/dev/null || {
        log "cargo install cargo-zigbuild"
        cargo install --locked cargo-zigbuild
    }
}

# The highest GLIBC_x.y symbol version FILE needs ("none" for none).
glibc_max_of() {
    local versions
    versions=$(readelf -W --version-info --dyn-syms "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV)
    if [ -z "$versions" ]; then echo none; else echo "$versions" | tail -n1; fi
}

# Fails when FILE needs a GLIBC symbol version above GLIBC_MAX.
check_glibc() {
    local file=$1 max over
    max=$(glibc_max_of "$file")
    if [ "$max" = none ]; then
        log "$file: needs no versioned GLIBC symbol"
        return 0
    fi
    over=$(readelf -W --dyn-syms "$file" | grep -o '[A-Za-z0-9_]*@GLIBC_[0-9][0-9.]*' | sort -u \
        | while IFS=@ read -r sym ver; do
            v=${ver#GLIBC_}
            if [ "$(printf '%s\n%s\n' "$v" "$GLIBC_MAX" | sort -V | tail -n1)" != "$GLIBC_MAX" ]; then
                echo "$sym@$ver"
            fi
        done)
    if [ -n "$over" ]; then
        printf '%s\n' "$over" | sed 's/^/    /' >&2
        die "$file needs GLIBC $max, above GLIBC_MAX=$GLIBC_MAX (the symbols above)"
    fi
    log "$file: highest GLIBC symbol version $max (<= $GLIBC_MAX)"
}

# --features FEATURES, for the features gateway/Cargo.toml has.
feature_args() {
    local feature list=()
    for feature in ${FEATURES//,/ }; do
        grep -q "^$feature = " gateway/Cargo.toml && list+=("$feature")
    done
    [ ${#list[@]} -gt 0 ] && printf -- '--features\n%s\n' "$(IFS=,; echo "${list[*]}")"
    return 0
}

build() {
    local triple=$1 bin features
    mapfile -t features < <(feature_args)
    ensure_rust
    ensure_target "$triple"
    case "$TOOLCHAIN" in
        zig)
            ensure_zigbuild
            log "cargo zigbuild --release -p packgate ${features[*]} --target $triple.$GLIBC_MAX"
            cargo zigbuild --release -p packgate --bin packgate "${features[@]}" --target "$triple.$GLIBC_MAX"
            ;;
        gcc)
            ensure_gcc_cross "$triple"
            local prefix upper
            prefix=$(gcc_prefix_of "$triple")
            upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
            export "CARGO_TARGET_${upper}_LINKER=$prefix-gcc"
            export "CC_${triple//-/_}=$prefix-gcc" "AR_${triple//-/_}=$prefix-ar"
            log "cargo build --release -p packgate --target $triple (Debian's $prefix-gcc)"
            cargo build --release -p packgate --bin packgate "${features[@]}" --target "$triple"
            ;;
        *) die "TOOLCHAIN must be zig or gcc, not '$TOOLCHAIN'" ;;
    esac
    bin="target/$triple/release/packgate"
    [ -f "$bin" ] || die "no binary at $bin"
    check_glibc "$bin"
    # The release profile strips symbols already (strip = "symbols").
    printf '%-32s %9s bytes  %5s MiB  GLIBC max %s\n' "$triple" "$(stat -c %s "$bin")" \
        "$(awk -v b="$(stat -c %s "$bin")" 'BEGIN { printf "%.1f", b / 1048576 }')" \
        "$(glibc_max_of "$bin")"
}

cmd_deb() {
    command -v cargo-deb >/dev/null || {
        ensure_rust
        log "cargo install cargo-deb"
        cargo install --locked cargo-deb
    }
    command -v dpkg-deb >/dev/null || apt_install dpkg-dev
    local triple
    for triple in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
        build "$triple"
        log "cargo deb --target $triple (arch $(deb_arch_of "$triple"))"
        # --no-build: the binary above, capped at GLIBC_MAX, is the one
        # packaged; --no-strip: it is stripped already, and the host's
        # strip cannot read an ARM binary.
        cargo deb -p packgate --target "$triple" --no-build --no-strip --output target/debian/
    done
    ls -l target/debian/*.deb
}

# Unit tests of the pure crates for aarch64, run under qemu-user with the
# cross sysroot of Debian's libc6-dev-arm64-cross as the loader's root.
cmd_test_aarch64() {
    local triple=aarch64-unknown-linux-gnu
    ensure_rust
    ensure_target "$triple"
    ensure_gcc_cross "$triple"
    command -v qemu-aarch64 >/dev/null || apt_install qemu-user
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
    log "cargo test for $triple under qemu-aarch64 ${*:-(packgate-protocol, packgate-sim)}"
    if [ $# -eq 0 ]; then
        set -- -p packgate-protocol -p packgate-sim
    fi
    cargo test --target "$triple" "$@"
}

case "${1:-all}" in
    aarch64 | arm64 | armv7 | armhf) build "$(triple_of "$1")" ;;
    all)
        build aarch64-unknown-linux-gnu
        build armv7-unknown-linux-gnueabihf
        ;;
    deb) cmd_deb ;;
    test-aarch64) shift; cmd_test_aarch64 "$@" ;;
    check) [ $# -eq 2 ] || die "usage: $0 check FILE"; check_glibc "$2" ;;
    *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
