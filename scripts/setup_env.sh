#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Create (or reuse) ./.venv with exactly the package versions of requirements.lock. Sourced by the other scripts.
# PYTHON      the interpreter for a new venv (default python3; Python 3.11, see scripts/python_version.sh)
# VENV        where the venv lives (default ./.venv)
# TORCH_INDEX a wheel index for torch and torchvision, e.g. https://download.pytorch.org/whl/cpu for the
#             CPU build of the same versions (no CUDA libraries); default: PyPI's build (CUDA on Linux)
# NO_SETUP=1 skips it and uses the `python` already on PATH (the test suite runs the scripts that way).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
if [ "${NO_SETUP:-0}" = 1 ]; then
  # shellcheck disable=SC2317  # exit only when run rather than sourced
  return 0 2>/dev/null || exit 0
fi
source "$REPO_ROOT/scripts/python_version.sh"
VENV="${VENV:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_INDEX="${TORCH_INDEX:-}"
stamp="$VENV/.requirements.sha1"
# the stamp: the requirement files' hash (tests/test_environment.py reads it) and the torch index
want="$(cat "$REPO_ROOT/requirements.txt" "$REPO_ROOT/requirements.lock" | sha1sum | cut -d' ' -f1) $TORCH_INDEX"
if [ ! -x "$VENV/bin/python" ]; then
  check_python "$PYTHON"
  echo "setting up $VENV from requirements.lock (first run: a few minutes)"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  check_python "$VENV/bin/python"
  pip_install=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
  if [ -n "$TORCH_INDEX" ]; then
    # torch and torchvision alone from that index, at the pinned versions (a local label such as +cpu satisfies
    # the pin); the rest, their dependencies included, from the usual index below
    mapfile -t torch_pins < <(grep -E '^(torch|torchvision)==' "$REPO_ROOT/requirements.txt")
    "${pip_install[@]}" --force-reinstall --no-deps --index-url "$TORCH_INDEX" "${torch_pins[@]}"
  fi
  "${pip_install[@]}" -r "$REPO_ROOT/requirements.txt" -c "$REPO_ROOT/requirements.lock"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$REPO_ROOT"
