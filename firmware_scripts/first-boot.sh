#!/usr/bin/env bash
# First boot of a flashed box: data dir, firewall, device identity and TLS material.
# Run once by clinicbox-firstboot.service (as root, before clinicbox.service); safe to rerun.
#
# Root works here over a directory the service user owns, so nothing below it is followed:
# no chmod or chown of anything inside it, and the marker is made with O_EXCL (noclobber),
# which refuses a planted symbolic link instead of writing through it.
set -euo pipefail
umask 077

PREFIX="${CLINICBOX_PREFIX:-/opt/clinicbox}"
DATA="${CLINICBOX_DATA_DIR:-/var/lib/clinicbox}"
USER_NAME="${CLINICBOX_USER:-clinicbox}"

if [ -L "$DATA" ]; then
    echo "first-boot: $DATA is a symbolic link; refusing to change its target" >&2
    exit 2
fi
install -d -m 0700 "$DATA"
if id -u "$USER_NAME" >/dev/null 2>&1; then
    chown -h "$USER_NAME:$USER_NAME" "$DATA"
fi

"$PREFIX/lib/firewall.sh"

# The device key and the local CA are made by the service itself on first start (as the
# service user, so it owns them); nothing secret is made here as root.
marker="$DATA/.first-boot-done"
rm -f -- "$marker"  # removes a planted link itself, never its target
(set -o noclobber; date -u +%Y-%m-%dT%H:%M:%SZ > "$marker")
echo "first-boot: done; the portal prints a one-time setup code when it starts"
