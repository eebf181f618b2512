#!/usr/bin/env bash
# Remove what systemd/install.sh installed: sudo systemd/uninstall.sh [--purge]
#
# Stops and disables the service, removes the unit and /opt/edged. Keeps /etc/edged (the operator's
# configuration and password) and /var/lib/edged (the outbox) unless --purge is given. Idempotent.
# Environment: DESTDIR, EDGED_PREFIX (/opt/edged) and EDGED_INSTALL_NO_SYSTEMCTL=1, as for install.sh.
set -euo pipefail

destdir="${DESTDIR:-}"
prefix="${EDGED_PREFIX:-/opt/edged}"
no_systemctl="${EDGED_INSTALL_NO_SYSTEMCTL:-0}"
[ -n "$destdir" ] && no_systemctl=1
purge=0
case "${1:-}" in
  --purge) purge=1 ;;
  '') ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac
[ -n "$destdir" ] || [ "$(id -u)" = 0 ] || { echo "uninstall: run as root: sudo $0" >&2; exit 2; }

if [ "$no_systemctl" != 1 ] && systemctl cat edged.service >/dev/null 2>&1; then
  systemctl disable --now edged.service
fi
rm -f "$destdir/etc/systemd/system/edged.service" "$destdir/etc/systemd/system/edged.service.d/jetson.conf"
rmdir "$destdir/etc/systemd/system/edged.service.d" 2>/dev/null || true  # kept if `systemctl edit` left an override
[ "$no_systemctl" = 1 ] || systemctl daemon-reload
case "$prefix" in /?*/?*) rm -rf "$destdir$prefix" ;; *) echo "uninstall: refusing to remove $prefix" >&2; exit 2 ;; esac
if [ "$purge" = 1 ]; then
  # DynamicUser= keeps the state in /var/lib/private/edged behind the /var/lib/edged link.
  rm -rf "$destdir/etc/edged" "$destdir/var/lib/edged" "$destdir/var/lib/private/edged"
  echo "uninstall: removed edged, its configuration and its state"
else
  echo "uninstall: removed edged; kept $destdir/etc/edged and $destdir/var/lib/edged (--purge removes them)"
fi
