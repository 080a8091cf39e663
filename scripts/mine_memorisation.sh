#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Memorisation or under-fitting? A MINE critic trained on part of the target's rows (--holdout) scores higher on
# its own rows than on rows it never saw. This refits the target's I(X;T) and I(T;Y), on every row and held out,
# with more steps (ITERS) on some checkpoints of finished runs. If the unseen-row bound rises towards the
# training-row bound with more steps, the gap was under-fitting; if the gap stays or widens, it is memorisation.
#
#   bash scripts/mine_memorisation.sh save/model/resnet8_digits_a_lr_0.05_trial_*_vanilla save/model/resnet8_digits_a_a0.5_b1.0_ctc_s*
#   python -m scripts.memorisation_table --group vanilla save/mine_memorisation/*_vanilla \
#       --group ctc save/mine_memorisation/*_ctc_s* --target digits_b
#
# The fits go to OUT/<run name>/, never to the run's own files, whose rows were fitted with other settings. The
# checkpoints are hard-linked and args.json copied. The settings are those of scripts/cpu_experiment.sh on digits,
# except ITERS. Environment: ITERS (2000), START (0), SKIP (30), END (epochs from START every SKIP up to END;
# default 90), SOURCE (digits_a), TARGET (digits_b), MODEL (resnet8), LR (1e-4), BATCH (256), HIDDEN (128), WINDOW
# (50), HOLDOUT (0.5), OUT (save/mine_memorisation), JOBS (runs at once, 2), THREADS (per run: the cores / JOBS).
# A rerun recomputes nothing.
set -euo pipefail
SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
REPO="$(dirname "$(dirname "$SELF")")"
: "${ITERS:=2000}" "${START:=0}" "${SKIP:=30}" "${END:=90}" "${SOURCE:=digits_a}" "${TARGET:=digits_b}" \
  "${MODEL:=resnet8}" "${LR:=1e-4}" "${BATCH:=256}" "${HIDDEN:=128}" "${WINDOW:=50}" "${HOLDOUT:=0.5}" \
  "${OUT:=save/mine_memorisation}" "${JOBS:=2}"
THREADS="${THREADS:-$(( $(nproc) > JOBS ? $(nproc) / JOBS : 1 ))}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

# refit RUN: the four target fits of one run's copy, in one Python process.
refit() {
  local run="${1%/}" copy
  copy="$OUT/$(basename "$run")"
  [ -f "$run/args.json" ] || { echo "error: $run is not a run folder (no args.json)." >&2; return 2; }
  mkdir -p "$copy"
  cp -f "$run/args.json" "$copy/"
  for ckpt in "$run"/ckpt_epoch_*.pth; do ln -f "$ckpt" "$copy/"; done
  local steps=() mode held
  for held in "" "--holdout $HOLDOUT"; do
    for mode in xt ty; do
      # shellcheck disable=SC2206  # $held is empty or two words
      steps+=(:: mine.py --mode "$mode" --dataset "$TARGET" --source_dataset "$SOURCE" --lr "$LR" --iter_num "$ITERS"
              --batch_size "$BATCH" --hidden_size "$HIDDEN" --window "$WINDOW" $held --ckpt_path "$copy"
              --model "$MODEL" --start_epoch "$START" --skip "$SKIP" --end_epoch "$END" --num_workers 0
              --no_progress)
    done
  done
  OMP_NUM_THREADS="$THREADS" python -m scripts.run_steps "${steps[@]}"
}

if [ "${1:-}" = --one ]; then refit "$2"; exit; fi
(( $# > 0 )) || { echo "usage: bash scripts/mine_memorisation.sh RUN_FOLDER [...] (see the comment at the top)" >&2; exit 2; }
CALLER="$PWD"
source "$REPO/scripts/setup_env.sh"
cd "$CALLER"                             # run folders and OUT are relative to where the script was called
export NO_SETUP=1 ITERS START SKIP END SOURCE TARGET MODEL LR BATCH HIDDEN WINDOW HOLDOUT OUT THREADS
printf '%s\n' "$@" | xargs -I{} -P "$JOBS" bash "$SELF" --one {}
echo "mine_memorisation done: fits in $OUT/; the table: python -m scripts.memorisation_table --group NAME $OUT/<runs> ..."
