#!/usr/bin/env bash
# Factory reset: crypto-shred the record store, forget the clinic, the claim, the accounts,
# the device key and the TLS material; the box comes back unclaimed with a new setup code.
#   factory-reset.sh --yes
set -euo pipefail

PREFIX="${CLINICBOX_PREFIX:-/opt/clinicbox}"
export CLINICBOX_DATA_DIR="${CLINICBOX_DATA_DIR:-/var/lib/clinicbox}"
CLINICBOX="${CLINICBOX_BIN:-$PREFIX/bin/clinicbox}"

if [ "${1:-}" != "--yes" ]; then
    echo "factory-reset: destroys every record, account and key on this box; add --yes" >&2
    exit 2
fi

# The store refuses to be wiped while the service holds it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet clinicbox.service; then
    systemctl stop clinicbox.service
    restart=1
else
    restart=0
fi

"$CLINICBOX" factory-reset --yes

if [ "$restart" -eq 1 ]; then
    systemctl start clinicbox.service
fi
