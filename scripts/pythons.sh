#!/usr/bin/env bash
# The daemon on every Python it supports: for each interpreter pyenv (or PATH) has, a fresh venv outside the
# checkout, a non-editable `pip install '.[opencv,test]'` (pip resolves numpy, OpenCV and the TFLite runtime for that
# version), the versions it chose, and the daemon's tests (settings, files, classifier, pipeline on a clip,
# publisher against a real Mosquitto, the CLI) run from another directory against the installed package.
# Too slow for CI (downloads and installs per version); run it by hand: scripts/pythons.sh [VERSION...]
#
# Versions: 3.10 3.11 3.12 3.13 by default; 3.8 (JetPack 5) is expected to be refused by pip (requires-python).
# Environment: EDGED_PYTHONS_DIR (where the venvs go; default ${TMPDIR:-/tmp}/edged-pythons, reused when present).
# Prints one line per version: PASS, FAIL or SKIP (interpreter absent) and, at the end, a table.
set -uo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
work="${EDGED_PYTHONS_DIR:-${TMPDIR:-/tmp}/edged-pythons}"
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.8 3.10 3.11 3.12 3.13)
tests=(tests/test_settings.py tests/test_paths.py tests/test_native.py tests/test_classifier.py tests/test_pipeline.py
       tests/test_publisher.py tests/test_cli.py)
mkdir -p "$work"
summary=()

find_python() {
  local v="$1" root candidate
  root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
  for candidate in "$root"/versions/"$v".*/bin/python"$v" "$(command -v "python$v" || true)"; do
    [ -x "$candidate" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

for v in "${versions[@]}"; do
  if ! python="$(find_python "$v")"; then
    echo "== Python $v: SKIP (no interpreter: pyenv install $v)"
    summary+=("$v | SKIP: no interpreter | | | |")
    continue
  fi
  venv="$work/py$v"
  echo "== Python $v ($python): venv $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1
  start=$(date +%s)
  if ! "$venv/bin/python" -m pip install -q "$src[opencv,test]" > "$work/py$v-pip.log" 2>&1; then
    if grep -q "different Python" "$work/py$v-pip.log"; then
      reason="pip refuses it: requires-python $(sed -n 's/^requires-python = "\(.*\)"/\1/p' "$src/pyproject.toml")"
    else
      reason="$(grep -m1 ERROR "$work/py$v-pip.log" || tail -1 "$work/py$v-pip.log")"
    fi
    echo "== Python $v: not installed: $reason"
    summary+=("$v | ${reason//|/ } | | | |")
    continue
  fi
  installed=$(( $(date +%s) - start ))
  pkgs="$("$venv/bin/python" - <<'PY'
from importlib import metadata
def v(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"
print(" | ".join(v(n) for n in ("numpy", "opencv-python-headless", "ai-edge-litert", "tflite-runtime")))
PY
)"
  echo "   installed in ${installed} s: numpy | OpenCV | ai-edge-litert | tflite-runtime: $pkgs"
  cd "$work" || exit 2
  # The tests import edged from the venv's site-packages (the checkout is not on sys.path from here).
  where="$("$venv/bin/python" -c 'import edged, sys; print(edged.__file__)')"
  echo "   edged from $where"
  start=$(date +%s)
  "$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$src" -m "not slow" \
      "${tests[@]/#/$src/}" > "$work/py$v-tests.log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  result="$(tail -1 "$work/py$v-tests.log")"
  echo "   tests (${took} s, rc $rc): $result"
  summary+=("$v | $([ $rc = 0 ] && echo PASS || echo FAIL): $result | $pkgs")
  cd "$src" || exit 2
done

echo
echo "| Python | tests | numpy | OpenCV | ai-edge-litert | tflite-runtime |"
echo "|---|---|---|---|---|---|"
for line in "${summary[@]}"; do echo "| $line |"; done
