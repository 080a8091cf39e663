#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Create (or reuse) ./.venv with the pinned requirements. Sourced by the other scripts.
# Set PYTHON to choose the interpreter (Python 3.11 is what the pins are tested on).
# NO_SETUP=1 skips it and uses the `python` already on PATH (the test suite runs the scripts that way).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
if [ "${NO_SETUP:-0}" = 1 ]; then
  # shellcheck disable=SC2317  # exit only when run rather than sourced
  return 0 2>/dev/null || exit 0
fi
VENV="${VENV:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.requirements.sha1"
want="$(sha1sum "$REPO_ROOT/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setting up $VENV from requirements.txt (first run: a few minutes)"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REPO_ROOT/requirements.txt"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$REPO_ROOT"
