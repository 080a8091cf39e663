#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# "Alleviating over-compression": CTC training in the paper's two settings, then the same sweeps.
#   SETTING=transferability (default): -a 0.5 --instance_t 0.10 --nce_t 0.10
#   SETTING=discriminability:          -a 0.1 --instance_t 0.50 --nce_t 0.40
# Every step resumes or skips what is already done, so the script is safe to re-run. The vanilla
# run of observe_overcompression.sh, when present, is drawn beside CTC in the figures.
# Environment (paper's values by default): MODEL EPOCHS (300) STAGE_TWO (200) SKIP DATA_FOLDER GPU
# SOURCE TARGET SETTING, and EXTRA_TRAIN_ARGS / EXTRA_SWEEP_ARGS.
set -euo pipefail
EPOCHS="${EPOCHS:-300}"
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
# shellcheck source=pipeline_common.sh
source "$REPO_ROOT/scripts/pipeline_common.sh"
STAGE_TWO="${STAGE_TWO:-200}"
SETTING="${SETTING:-transferability}"

case "$SETTING" in
  transferability)  ALPHA=0.5; INSTANCE_T=0.10; NCE_T=0.10; NOTE=ctc ;;
  discriminability) ALPHA=0.1; INSTANCE_T=0.50; NCE_T=0.40; NOTE=ctc_disc ;;
  *) echo "SETTING must be transferability or discriminability, not '$SETTING'" >&2; exit 2 ;;
esac
RUN="${MODEL}_${SOURCE}_a${ALPHA}_b1.0_${NOTE}"

step "CTC training ($SETTING setting): $MODEL on $SOURCE, $EPOCHS epochs, stage two after $STAGE_TWO"
# shellcheck disable=SC2086  # EXTRA_TRAIN_ARGS is a list of flags
python train_ctc.py --epochs "$EPOCHS" --dataset "$SOURCE" --model "$MODEL" --momentum 0.9 \
    --learning_rate 0.05 --batch_size 64 --weight_decay 0.0005 --weight_decay_coef 2.0 \
    --stage_two_epoch "$STAGE_TWO" -a "$ALPHA" -b 1.0 --instance_t "$INSTANCE_T" --instance_m 0.9 \
    --nce_t "$NCE_T" --nce_m 0.9 --update_memory_bank --save_freq 2 --note "$NOTE" \
    --data_folder "$DATA_FOLDER" --resume $EXTRA_TRAIN_ARGS

sweeps "$RUN"
VANILLA="${MODEL}_${SOURCE}_lr_0.05_trial_0_vanilla"
if [ -d "save/model/$VANILLA" ]; then figures "$VANILLA" "$RUN"; else figures "$RUN"; fi
