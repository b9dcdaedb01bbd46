#!/bin/sh
# Sets up a virtual CAN interface (default vcan0) for the SocketCAN tests:
#   sudo deploy/vcan-setup.sh [IFACE]
#   cargo test -p packgate-drivers --features vcan-tests --test can_vcan
# Needs a Linux kernel with CAN support (CONFIG_CAN, CONFIG_CAN_VCAN) and
# root (or CAP_NET_ADMIN). Containers and WSL kernels often have no CAN at
# all; the script says so instead of failing obscurely.
set -eu

IFACE="${1:-vcan0}"

fail() {
    echo "vcan-setup: $*" >&2
    exit 1
}

[ "$(uname -s)" = "Linux" ] || fail "SocketCAN needs Linux; this is $(uname -s)."
command -v ip >/dev/null 2>&1 || fail "the 'ip' command (iproute2) is missing: apt-get install iproute2"

if ip link show "$IFACE" >/dev/null 2>&1; then
    ip link set up "$IFACE" 2>/dev/null || fail "$IFACE exists but cannot be brought up (run as root?)"
    echo "vcan-setup: $IFACE is up"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    fail "creating $IFACE needs root: sudo $0 $IFACE"
fi

if ! modprobe vcan 2>/dev/null; then
    if [ ! -d /sys/module/vcan ] && ! grep -qw vcan /proc/modules 2>/dev/null; then
        echo "vcan-setup: 'modprobe vcan' failed; the module may be built in, trying anyway" >&2
    fi
fi

if ! ip link add dev "$IFACE" type vcan 2>/tmp/vcan-setup.err; then
    cat /tmp/vcan-setup.err >&2
    rm -f /tmp/vcan-setup.err
    fail "this kernel cannot create a vcan interface (no CONFIG_CAN_VCAN, or a \
container without CAN). Install the kernel's extra modules (Debian: \
linux-modules-extra-\$(uname -r)), or run the CAN tests on a host with CAN; \
the slcan tests (cargo test -p packgate-drivers can) need no kernel support."
fi
rm -f /tmp/vcan-setup.err
ip link set up "$IFACE" || fail "cannot bring $IFACE up"
echo "vcan-setup: $IFACE is up"
