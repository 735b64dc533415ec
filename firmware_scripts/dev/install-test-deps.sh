#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when run as root and they are missing.
# Not root: prints what is missing and goes on (tests needing those tools skip with a reason).
set -euo pipefail

packages=(chromium iproute2 postgresql shellcheck avahi-utils ethtool systemd nftables coturn)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "note: missing Debian packages (install them as root): ${missing[*]}" >&2
    exit 0
fi

echo "installing Debian packages: ${missing[*]}" >&2
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
