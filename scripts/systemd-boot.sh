#!/usr/bin/env bash
# The service under a real systemd: boots a debootstrapped Debian bookworm (systemd 252) with systemd-nspawn, installs
# edged with systemd/install.sh from a wheelhouse built here (the container has no network), and checks what a kiosk
# relies on: READY (Type=notify), events on a broker, the watchdog (SIGSTOP), SIGKILL restarts with the outbox kept,
# manual restarts not using up crash restarts, `edged check` inside the unit's sandbox, a hidden or unreadable file
# ending in exit 78 without restarts, an upgrade while the service runs, a clean stop, and uninstall. Prints one
# PASS/FAIL line per check with its figures (seconds, peak RSS). Too slow and too privileged for CI: run by hand, as
# root:  scripts/systemd-boot.sh            (about 5 minutes; the first run also debootstraps, a few minutes more)
#
# Needs: debootstrap and systemd-container (apt-get install debootstrap systemd-container), root, the .venv of
# scripts/setup.sh (it builds the wheelhouse and the long test clip).
# Environment: EDGED_BOOT_DIR (work directory, default /var/tmp/edged-boot: the bookworm root, kept between runs,
# and a wheelhouse), EDGED_BOOT_KEEP=1 (leave the container's root as it is after the run, for a look inside).
# Exit status: 0 every check passed, 1 one failed, 2 cannot run here.
set -uo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
work="${EDGED_BOOT_DIR:-/var/tmp/edged-boot}"
base="$work/bookworm"
failed=0

say() { echo "boot: $*"; }
die() { echo "boot: $*" >&2; exit 2; }
result() {  # result NAME OK DETAIL
  if [ "$2" = 0 ]; then echo "PASS  $1: $3"; else echo "FAIL  $1: $3"; failed=1; fi
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" = 0 ] || die "run as root"
command -v systemd-nspawn >/dev/null && command -v debootstrap >/dev/null \
  || die "needs systemd-nspawn and debootstrap: apt-get install systemd-container debootstrap"
[ -x "$src/.venv/bin/python" ] || die "needs $src/.venv: scripts/setup.sh"
mkdir -p "$work"

if [ ! -x "$base/usr/bin/python3" ]; then
  say "debootstrapping bookworm into $base"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,python3,python3-venv,mosquitto,mosquitto-clients,ca-certificates,sqlite3 \
    bookworm "$base" http://deb.debian.org/debian > "$work/debootstrap.log" 2>&1 || die "debootstrap failed: $work/debootstrap.log"
fi

# The container's own copy of the root, the checkout (tracked files) and a wheelhouse with everything pip needs.
root="$work/run"
rm -rf "$root" && cp -a "$base" "$root"
install -d "$root/usr/local/src/edged" "$root/var/cache/wheelhouse" "$root/srv/edged"
(cd "$src" && git ls-files -z --cached --others --exclude-standard | tar -c --null -T - ) | tar -x -C "$root/usr/local/src/edged"
say "building the wheelhouse (pip wheel '.[opencv]' and the build backend)"
rm -rf "$work/src" && cp -a "$root/usr/local/src/edged" "$work/src"  # pip builds in the tree: not in the checkout
"$src/.venv/bin/python" -m pip wheel -q -w "$work/wheelhouse" "$work/src[opencv]" > "$work/wheel.log" 2>&1 \
  && "$src/.venv/bin/python" -m pip download -q -d "$work/wheelhouse" "setuptools>=77" wheel pip >> "$work/wheel.log" 2>&1 \
  || die "could not build the wheelhouse: $work/wheel.log"
cp "$work"/wheelhouse/*.whl "$root/var/cache/wheelhouse/"
# A 4-minute clip (the sample, looped): the daemon must keep running through the restarts below.
[ -f "$work/clip.mp4" ] || "$src/.venv/bin/python" - "$src/samples/faces.mp4" "$work/clip.mp4" <<'PY'
import sys

import cv2

frames = []
capture = cv2.VideoCapture(sys.argv[1])
while True:
    ok, image = capture.read()
    if not ok:
        break
    frames.append(image)
fps = capture.get(cv2.CAP_PROP_FPS)
height, width = frames[0].shape[:2]
writer = cv2.VideoWriter(sys.argv[2], cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
for _ in range(int(240 * fps / len(frames)) + 1):
    for image in frames:
        writer.write(image)
writer.release()
PY
install -m 0644 "$work/clip.mp4" "$root/srv/edged/clip.mp4"
install -m 0600 "$work/clip.mp4" "$root/root/clip.mp4"  # where an operator might leave it: hidden from the service
install -d -m 0755 "$root/etc/edged"
cat > "$root/etc/edged/edged.env" <<'ENV'
EDGED_DEVICE_ID=nspawn
EDGED_CAMERA__SOURCE=/srv/edged/clip.mp4
EDGED_MQTT__HOST=127.0.0.1
EDGED_MQTT__STATS_INTERVAL_S=2
ENV
chmod 0600 "$root/etc/edged/edged.env"

start=$(now)
systemd-nspawn -q -D "$root" --boot --private-network --register=no --keep-unit --machine=edged-boot \
  --console=pipe > "$work/console.log" 2>&1 < /dev/null &
nspawn=$!
cleanup() {
  kill "$nspawn" 2>/dev/null; wait "$nspawn" 2>/dev/null
  [ "${EDGED_BOOT_KEEP:-0}" = 1 ] || rm -rf "$root"
}
trap cleanup EXIT
leader=""
for _ in $(seq 100); do
  leader="$(pgrep -P "$nspawn" -x systemd || true)"
  [ -n "$leader" ] && break
  sleep 0.1
done
[ -n "$leader" ] || die "the container did not start: $work/console.log"
c() { nsenter -t "$leader" -a -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
for _ in $(seq 300); do
  state="$(c systemctl is-system-running 2>/dev/null)"
  case "$state" in running|degraded) break ;; esac
  sleep 0.1
done
result boot "$([ "$state" = running ]; echo $?)" "systemd $(c systemctl --version | head -1 | cut -d' ' -f2) is $state after $(since "$start") s"

show() { c systemctl show edged -p "$1" --value; }
main_pid() { show MainPID; }
wait_new_pid() {  # wait_new_pid OLD TIMEOUT: until the service runs again as another process; prints the new PID
  local deadline=$(( $(date +%s) + $2 )) pid
  while [ "$(date +%s)" -lt "$deadline" ]; do
    pid="$(main_pid)"
    if [ "$pid" != 0 ] && [ "$pid" != "$1" ] && [ "$(show SubState)" = running ]; then echo "$pid"; return 0; fi
    sleep 0.2
  done
  return 1
}
next_event_seq() { c mosquitto_sub -h 127.0.0.1 -t edged/nspawn/events -C 1 -W 60 | sed -n 's/.*"seq": *\([0-9]*\).*/\1/p'; }

# Install, as the README says, from the wheelhouse.
t=$(now)
out="$(c env PIP_NO_INDEX=1 PIP_FIND_LINKS=/var/cache/wheelhouse EDGED_PLATFORM=generic \
  /usr/local/src/edged/systemd/install.sh 2>&1)"
rc=$?
echo "$out" | sed 's/^/    /'
result install "$rc" "install.sh exit $rc in $(since "$t") s (venv, pip from the wheelhouse, check in the sandbox, start)"
echo "$out" | grep -q "^PASS  model .*site-packages/edged/models/emotions-int8.tflite"
result "bundled model" $? "the check loaded the model from the installed package"

t=$(now)
c systemctl restart edged  # Type=notify: returns once edged said READY=1
result ready "$([ "$(show SubState)" = running ]; echo $?)" "systemctl restart returned with the service running (READY=1) after $(since "$t") s"
seq1="$(next_event_seq)"
result events "$([ -n "$seq1" ]; echo $?)" "an event on edged/nspawn/events (seq $seq1)"
sleep 20
pid="$(main_pid)"
rss="$(c awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")"
result rss 0 "peak RSS (VmHWM) of the running daemon after 20 s: $rss MB"

# Watchdog: a stopped process stops pinging; systemd kills it after WatchdogSec=30s and restarts it RestartSec=10s later.
t=$(now)
c sh -c "kill -STOP $pid"
new="$(wait_new_pid "$pid" 90)"
result watchdog $? "SIGSTOP -> killed and running again as pid $new after $(since "$t") s ($(c journalctl -u edged -q --no-pager | grep -c 'Watchdog timeout') watchdog timeouts logged)"

# SIGKILL: restarted, and the outbox (and so seq) carried over.
before="$(next_event_seq)"
t=$(now)
c sh -c "kill -KILL $new"
again="$(wait_new_pid "$new" 60)"
ok=$?
after="$(next_event_seq)"
result sigkill "$([ "$ok" = 0 ] && [ -n "$after" ] && [ "$after" -gt "$before" ]; echo $?)" \
  "SIGKILL -> running again after $(since "$t") s; events seq $before before, $after after (outbox: $(c ls /var/lib/private/edged/ | tr "\n" " "))"

# Manual restarts must not use up the restarts a crash gets (systemd counts every start against StartLimitBurst=).
for _ in 1 2 3 4 5 6; do c systemctl restart edged; done
pid="$(main_pid)"
c sh -c "kill -KILL $pid"
again="$(wait_new_pid "$pid" 60)"
result "start limit" $? "6 manual restarts, then SIGKILL: restarted (pid $again), NRestarts=$(show NRestarts)"

# `edged check` in the unit's sandbox, while the service runs (it is stopped for the check and started again).
pid="$(main_pid)"
out="$(c /opt/edged/bin/edged-check-sandboxed 2>&1)"
rc=$?
echo "$out" | sed 's/^/    /'
result "sandboxed check" "$([ "$rc" = 0 ] && [ "$(show SubState)" = running ] && [ "$(main_pid)" != "$pid" ]; echo $?)" \
  "exit $rc; the running service was stopped for it and is running again"

# A file the service cannot see: root passes it, the sandboxed check fails it, the service exits 78 and is not restarted.
c sed -i 's|^EDGED_CAMERA__SOURCE=.*|EDGED_CAMERA__SOURCE=/root/clip.mp4|' /etc/edged/edged.env
c sh -c 'set -a; . /etc/edged/edged.env; /opt/edged/bin/edged check --skip-broker' > /dev/null 2>&1
as_root=$?
out="$(c /opt/edged/bin/edged-check-sandboxed --skip-broker 2>&1)"
rc=$?
echo "$out" | grep FAIL | sed 's/^/    /'
result "hidden file, check" "$([ "$as_root" = 0 ] && [ "$rc" = 78 ] && echo "$out" | grep -q 'FAIL  camera   EDGED_CAMERA__SOURCE=/root/clip.mp4: permission denied.*ProtectHome'; echo $?)" \
  "/root/clip.mp4: edged check as root exit $as_root (passes), in the sandbox exit $rc (FAIL naming the variable)"
restarts="$(show NRestarts)"
c systemctl restart edged 2>/dev/null
sleep 15
status="$(show ExecMainStatus)"
line="$(c journalctl -u edged -q --no-pager -n 20 | grep -m1 'edged: configuration error' | sed 's/.*edged: //')"
result "hidden file, run" "$([ "$status" = 78 ] && [ "$(show ActiveState)" = failed ] && [ "$(show NRestarts)" = "$restarts" ] \
  && ! c journalctl -u edged -q --no-pager | grep -q Traceback; echo $?)" \
  "exit $status, $(show ActiveState) and not restarted after 15 s; journal: $line"

# Upgrade while the service runs: install.sh stops it before its check and starts it after.
c sed -i 's|^EDGED_CAMERA__SOURCE=.*|EDGED_CAMERA__SOURCE=/srv/edged/clip.mp4|' /etc/edged/edged.env
c systemctl reset-failed edged
c systemctl start edged
pid="$(main_pid)"
t=$(now)
out="$(c env PIP_NO_INDEX=1 PIP_FIND_LINKS=/var/cache/wheelhouse EDGED_PLATFORM=generic \
  /usr/local/src/edged/systemd/install.sh 2>&1)"
rc=$?
result upgrade "$([ "$rc" = 0 ] && echo "$out" | grep -q 'stopping the running edged for the check' \
  && [ "$(show SubState)" = running ] && [ "$(main_pid)" != "$pid" ]; echo $?)" \
  "install.sh again while running: exit $rc in $(since "$t") s, stopped before the check, running again"

t=$(now)
c systemctl stop edged
status="$(c mosquitto_sub -h 127.0.0.1 -t edged/nspawn/status -C 1 -W 5)"
result "clean stop" "$([ "$(show Result)" = success ] && [ "$status" = offline ]; echo $?)" \
  "systemctl stop in $(since "$t") s, Result=$(show Result), retained status $status"

c /usr/local/src/edged/systemd/uninstall.sh > /dev/null
result uninstall "$(c test ! -e /etc/systemd/system/edged.service -a ! -e /opt/edged -a -e /etc/edged/edged.env; echo $?)" \
  "unit and /opt/edged removed, /etc/edged kept"

echo "boot: $([ "$failed" = 0 ] && echo "every check passed" || echo "some checks FAILED") in $(since "$start") s"
exit "$failed"
