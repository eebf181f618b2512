#!/usr/bin/env bash
# The daemon end to end on this machine: no camera, no broker needed.
# Sets up .venv, starts a throwaway Mosquitto on a free port, runs `edged run` on the bundled sample
# clip, and prints every MQTT message as it arrives. Extra arguments go to `edged run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh opencv >/dev/null
py=.venv/bin/python
work=$(mktemp -d)
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" > "$work/mosquitto.conf"
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
"$mosquitto" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
broker=$!
cleanup() { kill "$sub" "$broker" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
$py - "$port" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close(); break
    except OSError:
        time.sleep(0.05)
PY
echo "demo: throwaway Mosquitto on 127.0.0.1:$port; messages below are what a dashboard would receive"
mosquitto_sub -h 127.0.0.1 -p "$port" -v -t 'edged/#' &
sub=$!
sleep 0.5
export EDGED_MQTT__HOST=127.0.0.1 EDGED_MQTT__PORT="$port" EDGED_DEVICE_ID="${EDGED_DEVICE_ID:-demo-kiosk}"
export EDGED_CAMERA__SOURCE="${EDGED_CAMERA__SOURCE:-samples/faces.mp4}"
# A throwaway outbox too: the demo must not replay into, or lock, a real daemon's state directory.
export EDGED_STATE_DIR="${EDGED_STATE_DIR:-$work/state}"
status=0
.venv/bin/edged run "$@" || status=$?
sleep 1
echo "demo: the clip ended; edged exited $status"
exit "$status"
