#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Shared by observe_overcompression.sh and alleviate_overcompression.sh (sourced, not run).
# shellcheck disable=SC2034  # variables are used by the scripts that source this file
MODEL="${MODEL:-resnext32_16x4d}"
EPOCHS="${EPOCHS:-200}"
SKIP="${SKIP:-2}"
DATA_FOLDER="${DATA_FOLDER:-./data}"
SOURCE="${SOURCE:-cifar100}"
TARGET="${TARGET:-cinic10}"
EXTRA_TRAIN_ARGS="${EXTRA_TRAIN_ARGS:-}"
EXTRA_SWEEP_ARGS="${EXTRA_SWEEP_ARGS:-}"
export CUDA_VISIBLE_DEVICES="${GPU:-${CUDA_VISIBLE_DEVICES-0}}"   # an empty value (no GPU) stays empty

step() { printf '\n== %s\n' "$*"; }

# sweeps RUN: transfer, discriminability and the four MINE runs of the seed README (learning rates
# and iterations as in the paper: I(X;T) lr 8e-5 for 1e4 steps, I(T;Y) lr 1e-5 for 2e4 steps).
sweeps() {
  local run="$1" dataset
  # shellcheck disable=SC2086
  {
    step "transfer $SOURCE -> $TARGET: $run"
    python transfer.py --source_dataset "$SOURCE" --target_dataset "$TARGET" --model "$MODEL" \
        --ckpt_path "$run" --start_epoch "$SKIP" --skip "$SKIP" --data_folder "$DATA_FOLDER" $EXTRA_SWEEP_ARGS
    step "discriminability on $SOURCE: $run"
    python discriminability.py --dataset "$SOURCE" --model "$MODEL" --ckpt_path "$run" \
        --start_epoch "$SKIP" --skip "$SKIP" --data_folder "$DATA_FOLDER" $EXTRA_SWEEP_ARGS
    for dataset in "$SOURCE" "$TARGET"; do
      step "I(X;T) on $dataset: $run"
      python mine.py --mode xt --model "$MODEL" --dataset "$dataset" --ckpt_path "$run" --lr 8e-5 \
          --iter_num 1e+4 --start_epoch "$SKIP" --skip "$SKIP" --data_folder "$DATA_FOLDER" $EXTRA_SWEEP_ARGS
      step "I(T;Y) on $dataset: $run"
      python mine.py --mode ty --model "$MODEL" --dataset "$dataset" --ckpt_path "$run" --lr 1e-5 \
          --iter_num 2e+4 --start_epoch "$SKIP" --skip "$SKIP" --data_folder "$DATA_FOLDER" $EXTRA_SWEEP_ARGS
    done
  }
}

# figures RUN...: the paper's figures for these runs into figures/<last run>/.
figures() {
  local runs=() run
  for run in "$@"; do runs+=("save/model/$run"); done
  step "figures"
  python plot.py "${runs[@]}" --out "figures/${*: -1}"
}
