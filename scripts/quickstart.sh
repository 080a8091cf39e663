#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The main job on scikit-learn's embedded digits (no download): digits_a (0-4) is the source,
# digits_b (5-9) the target. Trains a small network vanilla and with CTC, checkpointing every
# epoch, sweeps transferability, discriminability and MINE over the checkpoints, and draws the
# figures. Idempotent: a second run resumes or reuses whatever exists. ~3 minutes on 2 idle CPU cores.
#
# Sizes can be overridden: MODEL EPOCHS STAGE_TWO NCE_K PROBE_EPOCHS MINE_ITERS MINE_BATCH MINE_HIDDEN
# MINE_SKIP; WORKDIR chooses where save/ and figures/ are written (default: the repository).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${WORKDIR:-$REPO}"

MODEL="${MODEL:-resnet8}"
EPOCHS="${EPOCHS:-10}"
STAGE_TWO="${STAGE_TWO:-6}"
NCE_K="${NCE_K:-256}"
PROBE_EPOCHS="${PROBE_EPOCHS:-30}"
MINE_ITERS="${MINE_ITERS:-300}"
MINE_BATCH="${MINE_BATCH:-256}"
MINE_HIDDEN="${MINE_HIDDEN:-128}"
MINE_SKIP="${MINE_SKIP:-2}"
COMMON=(--dataset digits_a --model "$MODEL" --epochs "$EPOCHS" --save_freq 1 --batch_size 64
        --learning_rate 0.05 --num_workers 0 --resume)
SWEEP=(--start_epoch 1 --skip 1 --num_workers 0)
VANILLA="save/model/${MODEL}_digits_a_lr_0.05_trial_0_vanilla"
CTC="save/model/${MODEL}_digits_a_a0.5_b1.0_ctc"

echo "== 1/6 vanilla training on digits_a ($MODEL, $EPOCHS epochs)"
python "$REPO/train_vanilla.py" "${COMMON[@]}" --note vanilla
echo "== 2/6 CTC training on digits_a (stage two after epoch $STAGE_TWO)"
python "$REPO/train_ctc.py" "${COMMON[@]}" --note ctc --stage_two_epoch "$STAGE_TWO" -a 0.5 -b 1.0 \
    --weight_decay_coef 2.0 --instance_t 0.10 --instance_m 0.9 --nce_t 0.10 --nce_m 0.9 --nce_k "$NCE_K" \
    --update_memory_bank

for run in "$VANILLA" "$CTC"; do
  echo "== 3/6 transfer digits_a -> digits_b: $run"
  python "$REPO/transfer.py" --source_dataset digits_a --target_dataset digits_b --model "$MODEL" \
      --ckpt_path "$run" --epoch "$PROBE_EPOCHS" "${SWEEP[@]}"
  echo "== 4/6 discriminability on digits_a: $run"
  python "$REPO/discriminability.py" --dataset digits_a --ckpt_path "$run" --n_init 3 "${SWEEP[@]}"
  for dataset in digits_a digits_b; do
    for mode in xt ty; do
      echo "== 5/6 MINE ${mode^^} on $dataset: $run"
      python "$REPO/mine.py" --mode "$mode" --dataset "$dataset" --ckpt_path "$run" --lr 1e-4 \
          --iter_num "$MINE_ITERS" --batch_size "$MINE_BATCH" --hidden_size "$MINE_HIDDEN" \
          --window "$(( MINE_ITERS < 50 ? MINE_ITERS : 50 ))" \
          --start_epoch "$MINE_SKIP" --skip "$MINE_SKIP" --num_workers 0
    done
  done
done

echo "== 6/6 figures"
python "$REPO/plot.py" "$VANILLA" "$CTC" --labels vanilla,ctc --out figures
echo "quick start done: figures in $(pwd)/figures/, runs in $(pwd)/save/model/;"
echo "watch training curves with: tensorboard --logdir $(pwd)/save/tensorboard"
