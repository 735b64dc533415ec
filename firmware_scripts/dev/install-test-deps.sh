#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when run as root and they are missing,
# then the npm packages the tests pin in the repo's own package-lock.json files (npm ci, no
# browser download): the lab's Firefox driver (harness/firefox: puppeteer-core, driving
# Debian's firefox-esr) and axe-core for the accessibility check (tests/e2e/axe).
# Not root: prints what is missing and goes on (tests needing those tools skip with a reason).
set -euo pipefail

packages=(chromium firefox-esr iproute2 postgresql shellcheck avahi-utils ethtool systemd nftables coturn janus libnss3-tools)
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

npm_ci() {
    # $1: a folder with package.json and package-lock.json. Again only when the lock changed.
    local dir="$1"
    if [ -f "$dir/node_modules/.package-lock.json" ] &&
        [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
        return 0
    fi
    if ! command -v npm >/dev/null; then
        echo "note: npm is missing: the tests using $dir cannot run" >&2
        return 0
    fi
    echo "installing npm packages in ${dir#"$repo"/} (npm ci)" >&2
    (cd "$dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
}

install_npm_packages() {
    npm_ci "$repo/harness/firefox"
    npm_ci "$repo/tests/e2e/axe"
}
trap install_npm_packages EXIT

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
