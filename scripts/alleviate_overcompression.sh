#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# "Alleviating over-compression": CTC training in the paper's two settings, then the same sweeps.
#   transferability:  -a 0.5 --instance_t 0.10 --nce_t 0.10  -> <MODEL>_<SOURCE>_a0.5_b1.0_ctc
#   discriminability: -a 0.1 --instance_t 0.50 --nce_t 0.40  -> <MODEL>_<SOURCE>_a0.1_b1.0_ctc
# Both by default (SETTING=both); SETTING=transferability or discriminability runs one. The
# commands are the seed README's (both with --note ctc; alpha tells the folders apart). Every step
# resumes or skips what is already done, so the script is safe to re-run. The figures draw the
# vanilla run of observe_overcompression.sh, when present, beside the CTC runs.
# Environment (paper's values by default): MODEL EPOCHS (300) STAGE_TWO (200) SKIP DATA_FOLDER GPU
# SOURCE TARGET SETTING (both), and EXTRA_TRAIN_ARGS / EXTRA_SWEEP_ARGS.
set -euo pipefail
EPOCHS="${EPOCHS:-300}"
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
# shellcheck source=pipeline_common.sh
source "$REPO_ROOT/scripts/pipeline_common.sh"
STAGE_TWO="${STAGE_TWO:-200}"
SETTING="${SETTING:-both}"

case "$SETTING" in
  both) SETTINGS=(transferability discriminability) ;;
  transferability|discriminability) SETTINGS=("$SETTING") ;;
  *) echo "SETTING must be both, transferability or discriminability, not '$SETTING'" >&2; exit 2 ;;
esac

# ctc SETTING: train (or resume) one CTC run and sweep it; sets RUN to its folder name.
ctc() {
  local alpha instance_t nce_t
  case "$1" in
    transferability)  alpha=0.5; instance_t=0.10; nce_t=0.10 ;;
    discriminability) alpha=0.1; instance_t=0.50; nce_t=0.40 ;;
  esac
  RUN="${MODEL}_${SOURCE}_a${alpha}_b1.0_ctc"
  step "CTC training ($1 setting): $MODEL on $SOURCE, $EPOCHS epochs, stage two after $STAGE_TWO"
  # shellcheck disable=SC2086  # EXTRA_TRAIN_ARGS is a list of flags
  python train_ctc.py --epochs "$EPOCHS" --dataset "$SOURCE" --model "$MODEL" --momentum 0.9 \
      --learning_rate 0.05 --batch_size 64 --weight_decay 0.0005 --weight_decay_coef 2.0 \
      --stage_two_epoch "$STAGE_TWO" -a "$alpha" -b 1.0 --instance_t "$instance_t" --instance_m 0.9 \
      --nce_t "$nce_t" --nce_m 0.9 --update_memory_bank --save_freq 2 --note ctc \
      --data_folder "$DATA_FOLDER" --resume $EXTRA_TRAIN_ARGS
  sweeps "$RUN"
}

RUNS=()
VANILLA="${MODEL}_${SOURCE}_lr_0.05_trial_0_vanilla"
if [ -d "save/model/$VANILLA" ]; then RUNS+=("$VANILLA"); fi
for setting in "${SETTINGS[@]}"; do
  ctc "$setting"
  RUNS+=("$RUN")
done
figures "${RUNS[@]}"
