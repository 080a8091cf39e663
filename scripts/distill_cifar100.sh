#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Teacher -> student distillation on CIFAR-100 in the CRD / ITRD setting: wrn_40_2 -> wrn_16_2.
#   1. teacher wrn_40_2 with train_vanilla.py (240 epochs, lr 0.05, step decay at 150,180,210)
#   2. student wrn_16_2 alone     (train_vanilla.py, same schedule: the baseline every method must beat)
#   3. student wrn_16_2 with KD   (CRD's baseline: 0.1 x CE + 0.9 x KD, T = 4, no feature loss)
#   4. student wrn_16_2 with CRD  (CE + 0.8 x CRD, 16384 negatives, T = 0.07)
#   5. student wrn_16_2 with ITRD (CE + 1.0 x ITRD, lambda_corr 2.0, lambda_mutual 1.0, alpha 1.01)
# Every step passes --resume: rerun the script after an interruption and each step continues
# (or says it has finished). Environment: DATA_FOLDER (./data), EPOCHS (240; the decay epochs
# scale with it), MODEL_PATH (./save/model), NUM_WORKERS (8), DEVICE (default: CUDA when present).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"

DATA_FOLDER="${DATA_FOLDER:-./data}"
EPOCHS="${EPOCHS:-240}"
MODEL_PATH="${MODEL_PATH:-./save/model}"
NUM_WORKERS="${NUM_WORKERS:-8}"
DECAY="$((EPOCHS * 150 / 240)),$((EPOCHS * 180 / 240)),$((EPOCHS * 210 / 240))"
COMMON=(--dataset cifar100 --data_folder "$DATA_FOLDER" --model_path "$MODEL_PATH" --epochs "$EPOCHS"
        --learning_rate 0.05 --lr_decay_epochs "$DECAY" --batch_size 64 --weight_decay 5e-4 --momentum 0.9
        --num_workers "$NUM_WORKERS" --resume)
if [ -n "${DEVICE:-}" ]; then COMMON+=(--device "$DEVICE"); fi

echo "== 1/5 teacher wrn_40_2"
python train_vanilla.py "${COMMON[@]}" --model wrn_40_2 --note teacher
TEACHER="$MODEL_PATH/wrn_40_2_cifar100_lr_0.05_trial_0_teacher/wrn_40_2_last.pth"

echo "== 2/5 student wrn_16_2 alone"
python train_vanilla.py "${COMMON[@]}" --model wrn_16_2 --note student

STUDENT=(--model wrn_16_2 --teacher "$TEACHER" --stage_two_epoch 0)
echo "== 3/5 student wrn_16_2: KD"
python train_ctc.py "${COMMON[@]}" "${STUDENT[@]}" --stage_two_loss crd -b 0 --ce_weight 0.1 \
    --kd_weight 0.9 --kd_T 4 --note kd
echo "== 4/5 student wrn_16_2: CRD"
python train_ctc.py "${COMMON[@]}" "${STUDENT[@]}" --stage_two_loss crd -b 0.8 --nce_k 16384 --nce_t 0.07 \
    --nce_m 0.5 --contrast_feat_dim 128 --mode exact --note crd
echo "== 5/5 student wrn_16_2: ITRD"
python train_ctc.py "${COMMON[@]}" "${STUDENT[@]}" --stage_two_loss itrd -b 1.0 --lambda_corr 2.0 \
    --lambda_mutual 1.0 --alpha_it 1.01 --note itrd
echo "done: top-1 accuracies in the log.txt of each folder under $MODEL_PATH"
