#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Every GPU number docs/speed.md lists as not yet measured, in at most 8 minutes on one H100: bench.py's table
# at the paper's sizes, the speed flags against each other, MINE bf16 against fp32 at the paper's critic size,
# peak memory, and a one-epoch run of the whole pipeline on synthetic CIFAR-100 / CINIC-10 files.
#
#   bash scripts/gpu_check.sh [--quick] [--out DIR]
#
# --quick: small sizes on any device (under a minute on a CPU; the test suite runs it). --out: where
# gpu_check.json, gpu_check.md and each part's log go (default save/bench; a relative path is taken from the
# repository). Each part stops at its own time limit and the report keeps what the others measured.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/setup_env.sh"
exec python -m scripts.gpu_check "$@"
