#!/usr/bin/env bash
# Create .venv and install edged with the given extras (default: the daemon with pip's OpenCV).
# Installs Mosquitto (and, for the test extra, chromium) from Debian's packages when missing and we are root.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-opencv}"
python="${PYTHON:-python3}"

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing mosquitto (Debian package)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients) >/dev/null
  else
    echo "setup: mosquitto is not installed; run: sudo apt-get install mosquitto mosquitto-clients" >&2
  fi
fi

# The dashboard's browser tests drive Debian's chromium (tests/test_dashboard_browser.py); only the test extra needs it.
if [[ ",$extras," == *",test,"* ]] && ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing chromium and chromium-driver (Debian packages) for the dashboard's browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null
  else
    echo "setup: chromium is not installed (the dashboard's browser tests will be skipped); run:" \
         "sudo apt-get install chromium chromium-driver" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# pip and the build backend talk a lot (setuptools' notes on editable installs, index warnings): their output is
# kept in a log and shown only when an install fails.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
pip_install() {
  if ! .venv/bin/python -m pip install -q "$@" > "$log" 2>&1; then
    cat "$log" >&2
    echo "setup: pip install $* failed" >&2
    return 1
  fi
}
pip_install --upgrade pip || echo "setup: note: could not upgrade pip; going on" >&2
pip_install -e ".[$extras]" || exit 1
.venv/bin/python -c "import edged, cv2; print(f'setup: edged {edged.__version__} with OpenCV {cv2.__version__} in .venv')"
