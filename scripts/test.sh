#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Set up ./.venv (reused when present) and run the whole test suite on CPU.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-}"   # tests are CPU-only; keep an explicit choice
python -m pytest -q "$@"
