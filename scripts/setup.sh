#!/usr/bin/env bash
# Create .venv and install edged with the given extras (default: the daemon with pip's OpenCV).
# Installs Mosquitto from Debian's packages when it is missing and we are root. Idempotent.
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

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e ".[$extras]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import edged, cv2; print(f'setup: edged {edged.__version__} with OpenCV {cv2.__version__} in .venv')"
