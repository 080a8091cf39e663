#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Rich representations (Zhang & Bottou, ICML 2023) in their small setting: CIFAR-100 -> CIFAR-10.
#   1. SEEDS (4) vanilla runs of MODEL on CIFAR-100, seeds 0..SEEDS-1 (trial = seed)
#   2. every single network: linear probe and fine-tuning on CIFAR-10 (the best one is the baseline)
#   3. CAT2 (seeds 0,1) and CAT4 (seeds 0..3), each with the three protocols: linear (cat),
#      finetune ([init]cat), two_stage ([2ft]cat; its first stage reuses the single networks' fine-tuning)
#   4. DISTILL2 and DISTILL4: one MODEL trained to reproduce CAT2 / CAT4 on CIFAR-100, then
#      linear probe and fine-tuning on CIFAR-10 like a single network
# Every step resumes or skips what is done, so the script is safe to re-run. Results:
# transfer_cifar10_{linear,finetune}.csv in each run folder and transfer_cifar10_concat.csv (column
# `protocol`) in the seed-0 run folder; docs/rrl.md says how to read them.
# Environment: MODEL (resnet56) EPOCHS (200) SEEDS (4) DATA_FOLDER (./data) GPU (0) PROBE_EPOCHS (30)
# SOURCE (cifar100) TARGET (cifar10) EXTRA_TRAIN_ARGS EXTRA_SWEEP_ARGS.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
MODEL="${MODEL:-resnet56}"
SOURCE="${SOURCE:-cifar100}"
TARGET="${TARGET:-cifar10}"
# shellcheck source=pipeline_common.sh
source "$REPO_ROOT/scripts/pipeline_common.sh"
SEEDS="${SEEDS:-4}"
if [ "$SEEDS" -lt 2 ]; then echo "SEEDS must be at least 2 (CAT2 concatenates two runs), got $SEEDS" >&2; exit 2; fi
PROBE_EPOCHS="${PROBE_EPOCHS:-30}"
MODEL_PATH=./save/model
TRAIN=(--dataset "$SOURCE" --model "$MODEL" --epochs "$EPOCHS" --learning_rate 0.05 --batch_size 64
       --weight_decay 5e-4 --momentum 0.9 --save_freq "$EPOCHS" --data_folder "$DATA_FOLDER" --resume)
TRANSFER=(--source_dataset "$SOURCE" --target_dataset "$TARGET" --model "$MODEL" --epoch "$PROBE_EPOCHS"
          --data_folder "$DATA_FOLDER")
LAST="ckpt_epoch_$EPOCHS.pth"
run_of() { echo "${MODEL}_${SOURCE}_lr_0.05_trial_$1_rrl"; }

# single RUN: linear probe and fine-tuning of the run's last checkpoint; the fine-tuned weights are kept,
# and two_stage reuses them as the first stage of every CAT that includes the run
single() {
  # shellcheck disable=SC2086  # EXTRA_SWEEP_ARGS is a list of flags
  python transfer.py "${TRANSFER[@]}" --ckpt_path "$1" --mode linear --start_epoch "$EPOCHS" \
      --end_epoch "$EPOCHS" $EXTRA_SWEEP_ARGS
  # shellcheck disable=SC2086
  python transfer.py "${TRANSFER[@]}" --ckpt_path "$1" --mode finetune --start_epoch "$EPOCHS" \
      --end_epoch "$EPOCHS" --save_finetuned $EXTRA_SWEEP_ARGS
}

members=()
for ((seed = 0; seed < SEEDS; seed++)); do
  step "vanilla training, seed $seed: $MODEL on $SOURCE, $EPOCHS epochs"
  # shellcheck disable=SC2086  # EXTRA_TRAIN_ARGS is a list of flags
  python train_vanilla.py "${TRAIN[@]}" --seed "$seed" --trial "$seed" --note rrl $EXTRA_TRAIN_ARGS
  step "single network, seed $seed -> $TARGET"
  single "$(run_of "$seed")"
  members+=("$MODEL_PATH/$(run_of "$seed")/$LAST")
done

sizes=(2)
if [ "$SEEDS" -gt 2 ]; then sizes+=("$SEEDS"); fi
for n in "${sizes[@]}"; do
  cat_members="$(IFS=,; echo "${members[*]:0:$n}")"
  for mode in linear finetune two_stage; do
    step "CAT$n, $mode -> $TARGET"
    # shellcheck disable=SC2086
    python transfer.py "${TRANSFER[@]}" --ckpt_path "$(run_of 0)" --concat_paths "$cat_members" --mode "$mode" \
        $EXTRA_SWEEP_ARGS
  done
  step "DISTILL$n: one $MODEL reproducing CAT$n on $SOURCE"
  # shellcheck disable=SC2086
  python distill_cat.py "${TRAIN[@]}" --teachers "$cat_members" --note rrl $EXTRA_TRAIN_ARGS
  step "DISTILL$n -> $TARGET"
  single "${MODEL}_${SOURCE}_distill${n}_lr_0.05_trial_0_rrl"
done
echo "done: transfer_${TARGET}_*.csv in $MODEL_PATH/$(run_of 0)* and $MODEL_PATH/${MODEL}_${SOURCE}_distill*; see docs/rrl.md"
