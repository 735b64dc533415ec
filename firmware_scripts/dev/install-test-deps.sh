#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when run as root and they are missing.
# Not root: prints what is missing and goes on (tests needing those tools skip with a reason).
set -euo pipefail

packages=(chromium iproute2 postgresql shellcheck avahi-utils ethtool systemd nftables nodejs)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

# axe-core for the accessibility check (tests/e2e/test_accessibility.py), at the version
# pinned in the repo's own package-lock.json; only when the lock file changed since.
install_axe() {
    local dir
    dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/tests/e2e/axe"
    if ! command -v npm >/dev/null 2>&1; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "note: npm is missing; the accessibility check needs it (Debian: npm)" >&2
            return 0
        fi
        # Debian's nodejs comes without npm; some builds of nodejs carry their own.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm >/dev/null
    fi
    if [ ! -f "$dir/node_modules/.package-lock.json" ] \
        || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        npm ci --prefix "$dir" --no-audit --no-fund --silent >/dev/null
    fi
}

if [ "${#missing[@]}" -eq 0 ]; then
    install_axe
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "note: missing Debian packages (install them as root): ${missing[*]}" >&2
    install_axe
    exit 0
fi

echo "installing Debian packages: ${missing[*]}" >&2
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
install_axe
