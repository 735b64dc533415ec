#!/usr/bin/env bash
# Install ClinicBox under $DESTDIR (default: the real root /).
#
# Lays out /opt/clinicbox (app code, venv, launcher, scripts), /etc/clinicbox (config, kept
# if present), the systemd units, a sysusers.d entry for the `clinicbox` system user and the
# data dir /var/lib/clinicbox (0700). Safe to run again: it converges to the same tree.
#
#   DESTDIR=/tmp/root ./install.sh          # stage an image root (its own user, no systemctl)
#   WHEELHOUSE=/media/usb/wheels ./install.sh   # real install, dependencies from wheels
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DESTDIR="${DESTDIR:-}"
ROOT="${DESTDIR%/}"
PYTHON="${PYTHON:-python3}"
WHEELHOUSE="${WHEELHOUSE:-}"
PREFIX=/opt/clinicbox
DATA=/var/lib/clinicbox

say() { printf 'install: %s\n' "$*"; }

install -d -m 0755 "$ROOT$PREFIX" "$ROOT$PREFIX/app" "$ROOT$PREFIX/bin" "$ROOT$PREFIX/lib" \
    "$ROOT$PREFIX/docs" "$ROOT/etc/clinicbox" "$ROOT/etc/systemd/system" \
    "$ROOT/usr/lib/sysusers.d" "$ROOT/usr/lib/tmpfiles.d"
install -d -m 0700 "$ROOT$DATA"

# Application code: replaced wholesale so a removed module does not linger.
for pkg in appliance web sync; do
    if [ -d "$SRC/$pkg" ]; then
        rm -rf "$ROOT$PREFIX/app/$pkg"
        cp -R "$SRC/$pkg" "$ROOT$PREFIX/app/$pkg"
    fi
done
find "$ROOT$PREFIX/app" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$ROOT$PREFIX/app" -type d -exec chmod 0755 {} +
find "$ROOT$PREFIX/app" -type f -exec chmod 0644 {} +
install -m 0644 "$SRC/docs/technician-guide.md" "$ROOT$PREFIX/docs/technician-guide.md"

# The venv: made once; dependencies from a wheelhouse (the box has no internet at install).
if [ ! -x "$ROOT$PREFIX/venv/bin/python" ]; then
    if [ -n "$WHEELHOUSE" ]; then
        "$PYTHON" -m venv "$ROOT$PREFIX/venv"
    else
        "$PYTHON" -m venv --without-pip "$ROOT$PREFIX/venv"
    fi
fi
if [ -n "$WHEELHOUSE" ]; then
    # The dependency list is pyproject.toml's, read rather than copied so it cannot drift.
    mapfile -t deps < <("$PYTHON" -c 'import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
        "$SRC/pyproject.toml")
    "$ROOT$PREFIX/venv/bin/python" -m pip install --quiet --no-index \
        --find-links "$WHEELHOUSE" "${deps[@]}"
else
    say "WHEELHOUSE not set: venv made without dependencies"
fi
site="$("$ROOT$PREFIX/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
printf '%s\n' "$PREFIX/app" > "$site/clinicbox-app.pth"

# Launcher: the release `current` points at once an update bundle is installed
# (docs/updates.md), else this install's venv with the app on its path (the .pth above).
cat > "$ROOT$PREFIX/bin/clinicbox" <<LAUNCHER
#!/bin/sh
if [ -e $PREFIX/current/.complete ]; then
    exec $PREFIX/current/venv/bin/clinicbox "\$@"
fi
exec $PREFIX/venv/bin/python -c 'import sys; from appliance.commands.main import main; sys.argv[0] = "clinicbox"; main()' "\$@"
LAUNCHER
chmod 0755 "$ROOT$PREFIX/bin/clinicbox"

for script in first-boot.sh firewall.sh factory-reset.sh; do
    install -m 0755 "$SRC/firmware_scripts/$script" "$ROOT$PREFIX/lib/$script"
done
# The update launcher: standard library only, outside every release, so a broken release
# cannot take the way back with it.
install -m 0644 "$SRC/appliance/update/releases.py" "$ROOT$PREFIX/lib/releases.py"
# It places the units and firewall script of the release that starts (only those, by name).
install -m 0644 "$SRC/appliance/update/system_files.py" "$ROOT$PREFIX/lib/system_files.py"
install -m 0644 "$SRC/docs/updates.md" "$ROOT$PREFIX/docs/updates.md"
install -d -m 0755 "$ROOT/etc/clinicbox/release-keys"
for unit in clinicbox.service clinicbox-firstboot.service clinicbox-update-confirm.service \
    clinicbox-update-confirm.timer clinicbox-update-install.service \
    clinicbox-update-install.timer clinicbox-update-import.service \
    clinicbox-update-import.path; do
    install -m 0644 "$SRC/firmware_scripts/systemd/$unit" "$ROOT/etc/systemd/system/$unit"
done
install -m 0644 "$SRC/firmware_scripts/systemd/clinicbox.sysusers" \
    "$ROOT/usr/lib/sysusers.d/clinicbox.conf"
install -m 0644 "$SRC/firmware_scripts/systemd/clinicbox.tmpfiles" \
    "$ROOT/usr/lib/tmpfiles.d/clinicbox.conf"

# Config: the operator's edits survive a re-install.
if [ ! -e "$ROOT/etc/clinicbox/clinicbox.toml" ]; then
    install -m 0640 "$SRC/firmware_scripts/clinicbox.toml" "$ROOT/etc/clinicbox/clinicbox.toml"
fi

if [ -n "$ROOT" ]; then
    # An image root: the service user goes into the image's own /etc/passwd (never the build
    # host's), and the config and data dir get its numeric ids, so the flashed image is
    # right from the first boot. Needs root for chown; otherwise the first boot fixes it.
    if [ "$(id -u)" -eq 0 ]; then
        systemd-sysusers --root "$ROOT" clinicbox.conf
        uid="$(awk -F: '$1 == "clinicbox" { print $3 }' "$ROOT/etc/passwd")"
        gid="$(awk -F: '$1 == "clinicbox" { print $4 }' "$ROOT/etc/passwd")"
        chown "0:$gid" "$ROOT/etc/clinicbox/clinicbox.toml"
        chown "$uid:$gid" "$ROOT$DATA"
        say "staged into $ROOT (user clinicbox $uid:$gid in its /etc/passwd; no service enabled)"
    else
        say "staged into $ROOT (not root: no user created, ownership left to first boot)"
    fi
    exit 0
fi

systemd-sysusers clinicbox.conf
chown root:clinicbox /etc/clinicbox/clinicbox.toml
chown clinicbox:clinicbox "$DATA"
systemd-tmpfiles --create clinicbox.conf
systemctl daemon-reload
systemctl enable clinicbox-firstboot.service clinicbox.service clinicbox-update-confirm.timer \
    clinicbox-update-install.timer clinicbox-update-import.path
say "installed; start with: systemctl start clinicbox"
