#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The main job on scikit-learn's embedded digits (no download): digits_a (0-4) is the source, digits_b (5-9)
# the target. The seeded experiment of scripts/cpu_experiment.sh at a size that takes minutes: a resnet8
# trained vanilla and with CTC (stage two after epoch 6), 10 epochs, SEEDS seeds each (default 2), a checkpoint
# every SAVE_FREQ epochs (default 2: six points per curve, stage two's start among them); every checkpoint
# swept (5-fold cross-validated linear probe on digits_b, Recall@1 and NMI on digits_a, MINE I(X;T) and I(T;Y)
# on both, and on digits_b also held out); figures with mean +- std bands over seeds, and the results table.
# Ten epochs on ~900 images exercise the whole pipeline; whether the trade-off appears is what
# scripts/cpu_experiment.sh (90 epochs, 3 seeds) answers, in docs/results_cpu.md.
# Sized to take at most 5 minutes on 2 idle cores: MINE is ~90 % of a run's time, and its cost grows with the
# checkpoints swept, so a checkpoint every second epoch halves the run while the curves keep their shape.
# At the end it prints where the time went (per step, summed over the runs; python -m scripts.step_times).
# Idempotent: a second run resumes or reuses whatever exists.
#
# Sizes can be overridden: SEEDS SAVE_FREQ MODEL EPOCHS STAGE_TWO NCE_K CV PROBE_EPOCHS MINE_ITERS MINE_BATCH
# MINE_HIDDEN JOBS (runs at once, default 2); WORKDIR chooses where save/ and figures/ are written (default: the repository).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/setup_env.sh"
start="$(date +%s)"
export NO_SETUP=1 STEP_TIMES="${WORKDIR:-$(dirname "$HERE")}/save/logs/quickstart/step_times"
rm -f "$STEP_TIMES"/*.tsv
export SCALE=cpu SEEDS="${SEEDS:-2}" EPOCHS="${EPOCHS:-10}" STAGE_TWO="${STAGE_TWO:-6}" SAVE_FREQ="${SAVE_FREQ:-2}" \
       MINE_XT_ITERS="${MINE_ITERS:-300}" MINE_TY_ITERS="${MINE_ITERS:-300}" OUT="${OUT:-figures}"
bash "$HERE/cpu_experiment.sh"
echo "== where the time went (seconds of each step inside its run, summed over the runs that ran at once)"
python -m scripts.step_times "$STEP_TIMES" --start "$start" || true
echo "quick start done: figures and results table in ${OUT}/, runs in save/model/. The full experiment, with"
echo "its protocol: bash scripts/cpu_experiment.sh (docs/results_cpu.md). Training curves: tensorboard --logdir save/tensorboard"
