#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian/Ubuntu machine, then run them.
#   PYTHON=python3.10 VENV=.venv310 bash tests/run.sh   (defaults: python3, .venv)
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

# Independent Modbus peers: libmodbus's unit-test-server and our recording server are built on
# Debian's libmodbus; mbpoll is an independent Modbus client that reads the documented map.
if [ ! -d /usr/share/doc/libmodbus-dev/examples ] || ! command -v mbpoll >/dev/null 2>&1 || ! command -v gcc >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libmodbus-dev gcc mbpoll >/dev/null
fi

# systemd-analyze, systemd-sysusers and systemd-tmpfiles lint the unit files offline (no manager
# is started).
if ! command -v systemd-analyze >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq systemd >/dev/null
fi

if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -m venv "$VENV"; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
  rm -rf "$VENV" && "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[dev]"
echo "tests: $("$VENV/bin/python" --version) in $VENV"

"$VENV/bin/python" -m mypy
"$VENV/bin/python" -m ruff check linegate tests
set +e
"$VENV/bin/python" -m pytest --durations=12 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "tests: pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
