#!/usr/bin/env bash
# First boot of a flashed box: data dir, firewall, device identity and TLS material.
# Run once by clinicbox-firstboot.service (as root, before clinicbox.service); safe to rerun.
set -euo pipefail

PREFIX="${CLINICBOX_PREFIX:-/opt/clinicbox}"
DATA="${CLINICBOX_DATA_DIR:-/var/lib/clinicbox}"
USER_NAME="${CLINICBOX_USER:-clinicbox}"

install -d -m 0700 "$DATA"
if id -u "$USER_NAME" >/dev/null 2>&1; then
    chown "$USER_NAME:$USER_NAME" "$DATA"
fi

"$PREFIX/lib/firewall.sh"

# The device key and the local CA are made by the service itself on first start (as the
# service user, so it owns them); nothing secret is made here as root.
date -u +%Y-%m-%dT%H:%M:%SZ > "$DATA/.first-boot-done"
chmod 0600 "$DATA/.first-boot-done"
echo "first-boot: done; the portal prints a one-time setup code when it starts"
