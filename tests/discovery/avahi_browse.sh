#!/usr/bin/env bash
# Browse for ClinicBox adverts with avahi (outside Python) from inside a test namespace.
# Run as: ip netns exec NS unshare -m --propagation private bash avahi_browse.sh IFACE
# A private /run keeps this dbus and avahi-daemon apart from the host's; both are stopped
# on exit.
set -euo pipefail

iface="$1"
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/avahi-daemon
conf="$(mktemp)"
cat > "$conf" <<CONF
[server]
use-ipv4=yes
use-ipv6=no
allow-interfaces=$iface
[publish]
disable-publishing=yes
[wide-area]
enable-wide-area=no
CONF

dbus_pid="$(dbus-daemon --system --fork --print-pid --nopidfile)"
avahi-daemon --no-drop-root --no-chroot --no-rlimits -f "$conf" >/dev/null 2>&1 &
avahi_pid=$!
cleanup() {
    kill "$avahi_pid" "$dbus_pid" 2>/dev/null || true
    wait "$avahi_pid" 2>/dev/null || true
    rm -f "$conf"
}
trap cleanup EXIT

for _ in $(seq 1 50); do
    if avahi-browse --version >/dev/null 2>&1 && [ -S /run/avahi-daemon/socket ]; then
        break
    fi
    sleep 0.1
done
timeout 10 avahi-browse --resolve --terminate --parsable _clinicbox._tcp
