#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# "Observing over-compression": the paper's first experiment, in the seed README's order.
#   1. vanilla training on the source (100 checkpoints)
#   2. transfer sweep source -> target (linear probe per checkpoint)
#   3. discriminability sweep on the source (Recall@1, NMI)
#   4. the four MINE sweeps: I(X;T) and I(T;Y) on source and target
#   5. figures
# Every step resumes or skips what is already done, so the script is safe to re-run.
# Environment (paper's values by default): MODEL EPOCHS SKIP DATA_FOLDER GPU SOURCE TARGET, and
# EXTRA_TRAIN_ARGS / EXTRA_SWEEP_ARGS appended to the training / sweep commands.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
# shellcheck source=pipeline_common.sh
source "$REPO_ROOT/scripts/pipeline_common.sh"

RUN="${MODEL}_${SOURCE}_lr_0.05_trial_0_vanilla"

step "vanilla training: $MODEL on $SOURCE, $EPOCHS epochs"
# shellcheck disable=SC2086  # EXTRA_TRAIN_ARGS is a list of flags
# The seed README's command, plus the original's schedule spelled out (train_vanilla.py's defaults):
# 5 warm-up epochs, then cosine over EPOCHS + 1 down to 0.1 x the learning rate.
python train_vanilla.py --epochs "$EPOCHS" --dataset "$SOURCE" --model "$MODEL" --weight_decay 0.0005 \
    --momentum 0.9 --learning_rate 0.05 --batch_size 64 --save_freq 2 --note vanilla \
    --warmup_epochs 5 --min_lr_scale 0.1 --data_folder "$DATA_FOLDER" --resume $EXTRA_TRAIN_ARGS

sweeps "$RUN"
figures "$RUN"
