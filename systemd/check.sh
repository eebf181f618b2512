#!/usr/bin/env bash
# `edged check` inside the edged service's own sandbox: sudo systemd/check.sh [edged check options, e.g. --skip-broker]
#
# Runs the installed edged as a transient unit (systemd-run) with every [Service] setting of edged.service and its
# drop-ins (`systemctl cat`, so `systemctl edit` overrides count): the same dynamic user, env file, credentials,
# state directory, hidden /home and read-only system. A file the service could not read fails here as it would
# there. One process at a time holds a camera: a running service is stopped for the check and started again after.
# install.sh installs this as /opt/edged/bin/edged-check-sandboxed and runs it.
# Environment: EDGED_UNIT (edged.service).
# Exit status: edged check's (0 every check passed, 78 one failed for its configuration, 1 another failed), 2 usage.
set -euo pipefail

unit="${EDGED_UNIT:-edged.service}"
[ "$(id -u)" = 0 ] || { echo "check: run as root: sudo $0" >&2; exit 2; }
text="$(systemctl cat "$unit" 2>/dev/null)" || { echo "check: $unit is not installed (systemd/install.sh)" >&2; exit 2; }

props=()
exec_start=""
section=""
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    ''|'#'*|';'*) continue ;;
    '['*) section="$line"; continue ;;
  esac
  [ "$section" = "[Service]" ] || continue
  case "${line%%=*}" in
    ExecStart) [ -z "${line#*=}" ] || exec_start="${line#*=}" ;;
    # How the service is supervised, not what it may see or do.
    Type|NotifyAccess|WatchdogSec|Restart|RestartSec|RestartPreventExitStatus|TimeoutStartSec|TimeoutStopSec) ;;
    ExecStartPre|ExecStartPost|ExecStop|ExecStopPost|ExecReload|ExecCondition) ;;
    *) props+=(-p "$line") ;;
  esac
done <<< "$text"
binary="${exec_start%% *}"
binary="${binary#[-@:+!]}"
[ -n "$binary" ] || { echo "check: no ExecStart= in $unit" >&2; exit 2; }

restart=0
if systemctl is-active --quiet "$unit"; then
  echo "check: stopping $unit for the check (it holds the camera); it is started again after"
  systemctl stop "$unit"
  restart=1
fi
status=0
systemd-run --quiet --wait --pipe --collect --unit="edged-check-$$" "${props[@]}" "$binary" check "$@" || status=$?
if [ "$restart" = 1 ] && ! systemctl start "$unit"; then
  # Not this script's failure: the check above says why (the service runs with the same configuration).
  echo "check: $unit did not start again: systemctl status $unit" >&2
fi
exit "$status"
