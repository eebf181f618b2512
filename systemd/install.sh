#!/usr/bin/env bash
# Install (or upgrade) edged as a systemd service on a kiosk: sudo systemd/install.sh
#
# - a venv in /opt/edged (--system-site-packages on Raspberry Pi OS for apt's picamera2, and on a Jetson for
#   JetPack's OpenCV with GStreamer), edged installed into it (the model is package data inside it);
#   systemd/check.sh as /opt/edged/bin/edged-check-sandboxed;
# - /etc/systemd/system/edged.service; /etc/edged/edged.env from the example, never overwriting an existing
#   one (the current example is always written beside it as edged.env.example); an empty
#   /etc/edged/mqtt_password (mode 0600) for LoadCredential= when none exists; on a Jetson, a drop-in
#   edged.service.d/jetson.conf allowing its Tegra devices (/dev/nvmap, /dev/nvhost-*...);
# - stop a running service (an upgrade: it holds the camera), `edged check` inside the unit's own sandbox
#   (systemd/check.sh: the dynamic user, env file, credentials, hidden /home), then enable and (re)start the
#   service. Idempotent: run it again to upgrade.
#
# Environment: DESTDIR (install under this root; implies no check and no start), EDGED_PREFIX (/opt/edged),
# EDGED_PLATFORM (pi, jetson or generic; detected), EDGED_EXTRAS (pip extras; opencv except on a Jetson),
# PYTHON (python3), EDGED_INSTALL_NO_PIP=1 (no venv, no pip: files only), EDGED_INSTALL_NO_SYSTEMCTL=1,
# EDGED_DEV (/dev: where a Jetson's Tegra device nodes are looked for).
# Exit status: 0 installed, 1 installed but `edged check` failed (fix /etc/edged/edged.env), 2 usage or error.
set -euo pipefail

src="$(cd "$(dirname "$0")/.." && pwd)"
destdir="${DESTDIR:-}"
prefix="${EDGED_PREFIX:-/opt/edged}"
python="${PYTHON:-python3}"
no_pip="${EDGED_INSTALL_NO_PIP:-0}"
no_systemctl="${EDGED_INSTALL_NO_SYSTEMCTL:-0}"
etc="$destdir/etc/edged"
unit_dir="$destdir/etc/systemd/system"

say() { echo "install: $*"; }
die() { echo "install: $*" >&2; exit 2; }

[ $# -eq 0 ] || die "no arguments expected (see the comments at the top of $0)"
[ -n "$destdir" ] || [ "$(id -u)" = 0 ] || die "run as root: sudo $0"
[ -f "$src/pyproject.toml" ] && [ -f "$src/systemd/edged.service" ] || die "run from an edged checkout ($src)"

platform="${EDGED_PLATFORM:-}"
if [ -z "$platform" ]; then
  if [ -f /etc/nv_tegra_release ]; then platform=jetson
  elif [ -f /etc/rpi-issue ] || grep -qs "Raspberry Pi" /proc/device-tree/model; then platform=pi
  else platform=generic
  fi
fi
case "$platform" in
  pi|jetson) venv_flags=(--system-site-packages) ;;
  generic) venv_flags=() ;;
  *) die "EDGED_PLATFORM must be pi, jetson or generic, not '$platform'" ;;
esac
# pip's OpenCV has no GStreamer: a Jetson keeps JetPack's (python3-opencv), seen through the system site.
extras="${EDGED_EXTRAS-$([ "$platform" = jetson ] && echo "" || echo opencv)}"
say "platform $platform, prefix $destdir$prefix, extras '${extras}'"

# The venv and the package.
if [ "$no_pip" != 1 ]; then
  "$python" -c "import sys; sys.exit(sys.version_info < (3, 10))" 2>/dev/null \
    || die "edged needs Python 3.10 or newer; $python is older (JetPack 5 has 3.8: see the README's Jetson section)"
  if [ ! -x "$destdir$prefix/bin/python" ]; then
    "$python" -m venv "${venv_flags[@]}" "$destdir$prefix"
  fi
  "$destdir$prefix/bin/python" -m pip install -q --upgrade pip || say "note: could not upgrade pip; going on"
  "$destdir$prefix/bin/python" -m pip install -q --upgrade "$src${extras:+[$extras]}"
  if [ "$platform" = pi ] && ! "$destdir$prefix/bin/python" -c "import picamera2" 2>/dev/null; then
    say "note: picamera2 is missing; for the Pi camera: sudo apt install python3-picamera2"
  fi
fi
install -d -m 0755 "$destdir$prefix/bin"
install -m 0755 "$src/systemd/check.sh" "$destdir$prefix/bin/edged-check-sandboxed"

# The unit (its paths follow the prefix) and the configuration.
install -d -m 0755 "$unit_dir"
sed "s|/opt/edged/|$prefix/|g" "$src/systemd/edged.service" > "$unit_dir/edged.service.tmp"
chmod 0644 "$unit_dir/edged.service.tmp"
mv "$unit_dir/edged.service.tmp" "$unit_dir/edged.service"
# Jetson: nvvidconv and NVMM buffers need the Tegra devices, which have no device class of their own; allow the
# nodes this board has by path, in a drop-in (DeviceAllow= takes no globs, so they are expanded here).
if [ "$platform" = jetson ]; then
  dropin="$unit_dir/edged.service.d"
  lines=""
  for node in "${EDGED_DEV:-/dev}"/nvmap "${EDGED_DEV:-/dev}"/nvhost-* "${EDGED_DEV:-/dev}"/nvgpu/*/* "${EDGED_DEV:-/dev}"/host1x-fence; do
    if [ -e "$node" ]; then lines+="DeviceAllow=/dev/${node#"${EDGED_DEV:-/dev}"/} rw"$'\n'; fi
  done
  if [ -n "$lines" ]; then
    install -d -m 0755 "$dropin"
    printf '# Written by systemd/install.sh: the Tegra devices of this Jetson.\n[Service]\n%s' "$lines" > "$dropin/jetson.conf"
    chmod 0644 "$dropin/jetson.conf"
  fi
fi
install -d -m 0755 "$etc"
install -m 0644 "$src/systemd/edged.env.example" "$etc/edged.env.example"
if [ -e "$etc/edged.env" ]; then
  say "keeping $etc/edged.env (compare with edged.env.example beside it for new variables)"
else
  install -m 0600 "$src/systemd/edged.env.example" "$etc/edged.env"
  say "wrote $etc/edged.env: set EDGED_CAMERA__SOURCE and EDGED_MQTT__HOST there"
fi
if [ ! -e "$etc/mqtt_password" ]; then
  install -m 0600 /dev/null "$etc/mqtt_password"  # empty: no password (LoadCredential= needs the file)
fi

[ -z "$destdir" ] || { say "done (DESTDIR: no check, no systemctl)"; exit 0; }

if [ "$no_systemctl" = 1 ]; then
  say "done (EDGED_INSTALL_NO_SYSTEMCTL: no check, no start)"
  exit 0
fi
systemctl daemon-reload
# An upgrade: the old service holds the camera, which the check opens. Stopped here, started again below.
if systemctl is-active --quiet edged.service; then
  say "stopping the running edged for the check"
  systemctl stop edged.service
fi
status=0
if ! "$prefix/bin/edged-check-sandboxed"; then
  status=1
  say "edged check FAILED: fix $etc/edged.env, then: sudo systemctl restart edged"
fi
systemctl enable edged.service
systemctl restart edged.service
say "started: systemctl status edged; journalctl -u edged -f"
exit "$status"
