#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Teacher -> student distillation on CIFAR-100 in the CRD / ITRD setting: the 13 pairs of ITRD's two tables.
#   same family:   wrn_40_2->wrn_16_2, wrn_40_2->wrn_40_1, resnet56->resnet20, resnet110->resnet20,
#                  resnet110->resnet32, resnet32x4->resnet8x4, vgg13->vgg8
#   across family: vgg13->MobileNetV2, ResNet50->MobileNetV2, ResNet50->vgg8, resnet32x4->ShuffleV1,
#                  resnet32x4->ShuffleV2, wrn_40_2->ShuffleV1
# Every teacher is trained once (train_vanilla.py, seed 0); every student once per seed and method:
#   student  alone (train_vanilla.py): the baseline every method must beat
#   kd       0.1 x CE + 0.9 x KD, T = 4, no feature loss (CRD's KD baseline)
#   crd      CE + 0.8 x CRD, 16384 negatives, T = 0.07, momentum 0.5
#   itrd     CE + 1.0 x ITRD, lambda_corr 2.0, lambda_mutual 1.0, alpha 1.01
# All runs: SGD, batch 64, weight decay 5e-4, momentum 0.9, EPOCHS=240 epochs with step decay x0.1 at
# 150, 180, 210 (scaled with EPOCHS), no warm-up; learning rate 0.05, but 0.01 for MobileNetV2,
# ShuffleV1 and ShuffleV2 (CRD's rule, for teachers and students alike).
#
# Choose with the environment:
#   PAIRS=all|same|cross|<teacher>:<student>,...   (all)   e.g. PAIRS=vgg13:vgg8,ResNet50:vgg8
#   METHODS=student,kd,crd,itrd                     (all four)
#   SEEDS=0,1,2                                     (0) each student run per seed: --seed S --trial S
#   DRY_RUN=1                                       print the commands, run nothing
# A run whose log.txt reached EPOCHS and whose final checkpoint exists is skipped; any other is started
# or continued with --resume, so rerunning after an interruption picks up where it stopped.
# Also: DATA_FOLDER (./data), DATASET (cifar100), EPOCHS (240), MODEL_PATH (./save/model), NUM_WORKERS (8),
# NCE_K (16384), DEVICE (default: CUDA when present), EXTRA_TRAIN_ARGS (appended to every training).
# The results table: python -m scripts.distill_table (docs/distillation.md).
set -euo pipefail
DRY_RUN="${DRY_RUN:-0}"
if [ "$DRY_RUN" = 1 ]; then export NO_SETUP=1; fi  # a dry run neither creates nor checks .venv
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"

PAIRS="${PAIRS:-all}"
METHODS="${METHODS:-student,kd,crd,itrd}"
SEEDS="${SEEDS:-0}"
DATA_FOLDER="${DATA_FOLDER:-./data}"
DATASET="${DATASET:-cifar100}"
EPOCHS="${EPOCHS:-240}"
MODEL_PATH="${MODEL_PATH:-./save/model}"
NUM_WORKERS="${NUM_WORKERS:-8}"
NCE_K="${NCE_K:-16384}"
read -ra EXTRA <<< "${EXTRA_TRAIN_ARGS:-}"

# The teacher:student pairs of ITRD's two tables, from the file of published numbers the results table reads.
PUBLISHED="$REPO_ROOT/helper/report/itrd_cifar100.tsv"
table_pairs() { awk -F'\t' -v table="$1" '$1 == table {print $2 ":" $3}' "$PUBLISHED" | paste -sd, -; }
SAME_PAIRS="$(table_pairs same)"
CROSS_PAIRS="$(table_pairs cross)"
ALL_METHODS="student kd crd itrd"

# Per method: train_ctc.py flags, and the part of the run folder name train_ctc.py derives from them.
declare -A METHOD_ARGS=(
  [kd]="--stage_two_loss crd -b 0.0 --ce_weight 0.1 --kd_weight 0.9 --kd_T 4"
  [crd]="--stage_two_loss crd -b 0.8 --nce_k $NCE_K --nce_t 0.07 --nce_m 0.5 --contrast_feat_dim 128 --mode exact"
  [itrd]="--stage_two_loss itrd -b 1.0 --lambda_corr 2.0 --lambda_mutual 1.0 --alpha_it 1.01")
declare -A METHOD_FOLDER=([kd]="crd_b0.0_kd0.9" [crd]="crd_b0.8" [itrd]="itrd_b1.0")

fail() { echo "distill_cifar100.sh: $*" >&2; exit 2; }

case "$PAIRS" in
  all) PAIR_LIST="$SAME_PAIRS,$CROSS_PAIRS" ;;
  same) PAIR_LIST="$SAME_PAIRS" ;;
  cross) PAIR_LIST="$CROSS_PAIRS" ;;
  *) PAIR_LIST="$PAIRS" ;;
esac
IFS=, read -ra PAIR_LIST <<< "$PAIR_LIST"
IFS=, read -ra METHOD_LIST <<< "$METHODS"
IFS=, read -ra SEED_LIST <<< "$SEEDS"
for pair in "${PAIR_LIST[@]}"; do
  [[ "$pair" =~ ^[A-Za-z0-9_]+:[A-Za-z0-9_]+$ ]] \
      || fail "PAIRS: '$pair' is not <teacher>:<student> (e.g. vgg13:vgg8); or use all, same, cross."
done
for method in "${METHOD_LIST[@]}"; do
  [[ " $ALL_METHODS " == *" $method "* ]] || fail "METHODS: unknown method '$method'; choose from: ${ALL_METHODS// /,}."
done
for seed in "${SEED_LIST[@]}"; do
  [[ "$seed" =~ ^[0-9]+$ ]] || fail "SEEDS: '$seed' is not a non-negative integer (e.g. SEEDS=0,1,2)."
done
[[ "$EPOCHS" =~ ^[1-9][0-9]*$ ]] || fail "EPOCHS: '$EPOCHS' is not a positive integer."
[ ${#PAIR_LIST[@]} -gt 0 ] && [ ${#METHOD_LIST[@]} -gt 0 ] && [ ${#SEED_LIST[@]} -gt 0 ] \
    || fail "PAIRS, METHODS and SEEDS must each name at least one entry."

DECAY="$((EPOCHS * 150 / 240)),$((EPOCHS * 180 / 240)),$((EPOCHS * 210 / 240))"
COMMON=(--dataset "$DATASET" --data_folder "$DATA_FOLDER" --model_path "$MODEL_PATH" --epochs "$EPOCHS"
        --step_decay_epochs "$DECAY" --batch_size 64 --weight_decay 5e-4 --momentum 0.9
        --num_workers "$NUM_WORKERS" --resume)
if [ -n "${DEVICE:-}" ]; then COMMON+=(--device "$DEVICE"); fi

# CRD's learning rate: 0.01 for the light-weight networks, 0.05 for the rest (as written in folder names).
learning_rate() {
  case "$1" in MobileNetV2|mobile_half|ShuffleV1|ShuffleV2) echo 0.01 ;; *) echo 0.05 ;; esac
}

# finished RUN_DIR MODEL: the log reached EPOCHS and the final checkpoint is written.
finished() {
  [ -f "$1/$2_last.pth" ] && [ -f "$1/log.txt" ] && tail -n 1 "$1/log.txt" | grep -q "^{\"epoch\": $EPOCHS,"
}

# show ARGS...: the command as one copy-pasteable line (arguments quoted only where the shell needs it).
show() {
  local arg line=""
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=,+-]+$ ]]; then line+="$arg "; else line+="$(printf '%q' "$arg") "; fi
  done
  echo "${line% }"
}

declare -A SEEN=()
step=0
# train RUN_DIR MODEL SCRIPT ARGS...: run (or print) one training unless it is finished or already listed.
train() {
  local run_dir="$1" model="$2"
  shift 2
  [ -z "${SEEN[$run_dir]:-}" ] || return 0
  SEEN[$run_dir]=1
  step=$((step + 1))
  if finished "$run_dir" "$model"; then
    echo "== $step. done, skipped: $run_dir"
  elif [ "$DRY_RUN" = 1 ]; then
    show python "$@" "${EXTRA[@]}"
  else
    echo "== $step. $run_dir"
    python "$@" "${EXTRA[@]}"
  fi
}

for pair in "${PAIR_LIST[@]}"; do
  teacher="${pair%%:*}" student="${pair#*:}"
  t_lr="$(learning_rate "$teacher")" s_lr="$(learning_rate "$student")"
  teacher_dir="$MODEL_PATH/${teacher}_${DATASET}_lr_${t_lr}_trial_0_teacher"
  needs_teacher=0
  for method in "${METHOD_LIST[@]}"; do [ "$method" = student ] || needs_teacher=1; done
  if [ "$needs_teacher" = 1 ]; then
    train "$teacher_dir" "$teacher" train_vanilla.py "${COMMON[@]}" --model "$teacher" --learning_rate "$t_lr" \
        --seed 0 --trial 0 --note teacher
  fi
  for seed in "${SEED_LIST[@]}"; do
    for method in "${METHOD_LIST[@]}"; do
      if [ "$method" = student ]; then
        train "$MODEL_PATH/${student}_${DATASET}_lr_${s_lr}_trial_${seed}_student" "$student" train_vanilla.py \
            "${COMMON[@]}" --model "$student" --learning_rate "$s_lr" --seed "$seed" --trial "$seed" --note student
        continue
      fi
      read -ra method_args <<< "${METHOD_ARGS[$method]}"
      train "$MODEL_PATH/${student}_${DATASET}_T${teacher}_${METHOD_FOLDER[$method]}_${method}_trial_${seed}" \
          "$student" train_ctc.py "${COMMON[@]}" --model "$student" --learning_rate "$s_lr" --seed "$seed" \
          --trial "$seed" --teacher "$teacher_dir/${teacher}_last.pth" --teacher_model "$teacher" \
          --stage_two_epoch 0 "${method_args[@]}" --note "${method}_trial_${seed}"
    done
  done
done
if [ "$DRY_RUN" != 1 ]; then
  echo "done: python -m scripts.distill_table --model_path $MODEL_PATH prints the results table"
fi
