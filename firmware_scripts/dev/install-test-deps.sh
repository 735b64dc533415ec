#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when run as root and they are missing,
# then the lab's Firefox driver (puppeteer-core, pinned by appliance/lab/firefox's
# package-lock.json; it downloads no browser: the lab runs Debian's firefox-esr).
# Not root: prints what is missing and goes on (tests needing those tools skip with a reason).
set -euo pipefail

packages=(chromium firefox-esr iproute2 postgresql shellcheck avahi-utils ethtool systemd nftables coturn)
firefox_driver="$(cd "$(dirname "$0")/../.." && pwd)/appliance/lab/firefox"

install_firefox_driver() {
    # Again only when the lock file changed since the last install.
    if [ -d "$firefox_driver/node_modules" ] &&
        [ "$firefox_driver/node_modules/.package-lock.json" -nt "$firefox_driver/package-lock.json" ]; then
        return 0
    fi
    if ! command -v npm >/dev/null; then
        echo "note: npm is missing: the Firefox interop test cannot run" >&2
        return 0
    fi
    echo "installing the lab's Firefox driver (npm ci)" >&2
    (cd "$firefox_driver" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
}
trap install_firefox_driver EXIT

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

# Node.js from Debian only where no node and npm are installed (they may come from elsewhere).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    missing+=(nodejs npm)
fi

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
