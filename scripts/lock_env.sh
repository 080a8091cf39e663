#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Regenerate requirements.lock: install requirements.txt into a fresh, temporary venv and freeze every package
# version there (pip's constraints format). Run it after editing requirements.txt, then `bash scripts/test.sh`
# (which reinstalls .venv from the new lock) before committing both files.
# PYTHON chooses the interpreter (Python 3.11). Uses PyPI's torch build, whose CUDA packages the lock then
# lists too; a TORCH_INDEX install (e.g. the CPU build) just leaves those out.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO_ROOT/scripts/python_version.sh"
PYTHON="${PYTHON:-python3}"
check_python "$PYTHON"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REPO_ROOT/requirements.txt"
{
  echo "# Every package version of a venv built from requirements.txt, written by scripts/lock_env.sh"
  echo "# (Python $("$work/venv/bin/python" -c 'import platform; print(platform.python_version(), platform.machine())'))."
  echo "# Installed with: pip install -r requirements.txt -c requirements.lock (scripts/setup_env.sh does it)."
  "$work/venv/bin/python" -m pip freeze --all --exclude pip
} > "$work/requirements.lock"
mv "$work/requirements.lock" "$REPO_ROOT/requirements.lock"
echo "wrote $REPO_ROOT/requirements.lock ($(grep -vc '^#' "$REPO_ROOT/requirements.lock") packages)"
