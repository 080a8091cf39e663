#!/usr/bin/env bash
# The main job on the embedded digits data (no download): digits_a (source) -> digits_b (target).
# Sets up ./.venv, trains a small model with frequent checkpoints and sweeps them.
# Idempotent: a second run resumes or reuses what exists. About a few minutes on 2 CPU cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"

MODEL="${MODEL:-resnet8}"
EPOCHS="${EPOCHS:-6}"
COMMON=(--dataset digits_a --model "$MODEL" --epochs "$EPOCHS" --save_freq 1 --batch_size 64
        --learning_rate 0.05 --num_workers 0)

echo "== 1/1 vanilla training on digits_a"
python train_vanilla.py "${COMMON[@]}" --note vanilla --resume
echo "quick start done: checkpoints in save/model/, TensorBoard logs in save/tensorboard/"
