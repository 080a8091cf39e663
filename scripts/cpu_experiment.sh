#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The paper's question, seeded, at the scale a CPU allows: does transferability fall late in training while
# the source accuracy has saturated, do I(X;T) and I(T;Y) on the target fall with it, and does CTC lift the
# final transfer? Vanilla and CTC training, SEEDS seeds each, every sweep on every checkpoint, then the
# figures (mean +- std over seeds) and the results table. docs/results_cpu.md reports against this protocol.
#
# PROTOCOL, DATA=digits, the default (fixed before any outcome was seen; the numbers are the SCALE=cpu defaults)
# - Data: source digits_a (scikit-learn's digits 0-4: 720 train / 180 test images, 32x32), target digits_b
#   (digits 5-9: 718 train / 179 test). Model resnet8; batch 64, lr 0.05, weight decay 5e-4, momentum 0.9;
#   90 epochs for both methods, a checkpoint every 3 epochs (31 with the initialisation, epoch 0).
# - vanilla: train_vanilla.py with its default schedule (the original's). CTC: the paper's transferability
#   setting (-a 0.5 -b 1.0 --instance_t 0.1 --instance_m 0.9 --nce_t 0.1 --nce_m 0.9 --update_memory_bank
#   --weight_decay_coef 2.0), nce_k 256, stage two from epoch 60 (two thirds of the epochs).
# - Seeds 0..SEEDS-1 (3): --seed S --trial S; CTC's run folder ends in ctc_s<S>. Runs of a method differ only
#   in seed.
# - Metric: final_acc of a 5-fold cross-validated linear probe over all 897 digits_b images (transfer.py --cv 5;
#   30 probe epochs, lr 0.4; probe seed 0, so every checkpoint is scored on the same folds), with its standard
#   error per checkpoint (std over folds / sqrt(5)). Discriminability: Recall@1 and NMI on digits_a test.
#   MINE I(X;T) and I(T;Y) on the digits_a and digits_b test splits: 300 steps, batch 256, hidden 128, lr 1e-4.
# - Curves smoothed by a centred moving average over 3 checkpoints. The peak-transfer epoch P of a method is
#   the maximum of its seed-mean curve, the end E its last checkpoint.
# - A late drop: the 95 % Student-t interval over seeds of transfer(E) - transfer(P) lies entirely below 0.
# - CTC lifts the final transfer: Welch's 95 % interval of CTC's transfer(E) minus vanilla's lies entirely
#   above 0 (Welch, not paired by seed: the two methods' runs share no randomness after the start).
# - MI trends: MI(E) - MI(P) per seed with its 95 % interval; the paper expects both to fall on the target.
# - Memorisation: the two target fits also run with --holdout 0.5 (HOLDOUT; empty: off): the critic trains on
#   half of the rows and is scored on rows it never saw (mine.py's early-stopped held-out bound); the gap
#   between the training-row bound and the held-out bound is what the critic memorised.
# - Every configuration tried is reported, not only one that shows the effect.
# Estimated wall time on 2 idle CPU cores (JOBS=2): about 30 minutes, from CPU times of short runs (per
# epoch 1.7 s vanilla, 2.2 s CTC; per checkpoint 1.3 s CV probe, 0.3 s discriminability, 9.4 s for the
# four MINE fits; one thread each). docs/results_cpu.md holds the measured time.
#
# PROTOCOL, DATA=fashion (fixed before any outcome was seen; the same rules on real images)
# - Data: source fashion_a (Fashion-MNIST classes 0-4: T-shirt/top, trouser, pullover, dress, coat; 32x32 RGB
#   from the IDX files), training on the first SOURCE_PER_CLASS images of each class (--train_per_class; the
#   same subset for every seed), evaluated on its 5,000 test images. Target fashion_b (classes 5-9: sandal,
#   shirt, sneaker, bag, ankle boot: unseen classes of the same domain); second, cross-domain target digits_b
#   (TARGET2; empty: none). Model resnet8 and the optimiser of the digits protocol; EPOCHS epochs for both
#   methods, a checkpoint every SAVE_FREQ.
# - Sizes from a timing pilot, fixed before the experiment ran and only from it: vanilla training of seed 0,
#   read by scripts/pilot_reading.py (seconds and source training accuracy per epoch; never a validation,
#   transfer, discriminability or MI number). Rule: the whole experiment in at most 90 minutes on 2 idle cores,
#   and the training accuracy within 1 point of its final value (the mean of the last 5 epochs; the curve
#   smoothed over 5 epochs) by two thirds of the epochs, so at least the last third comes after saturation.
#   With the standard crop-and-flip augmentation no size tried saturated by two thirds (50 to 400 images per
#   class, 60 to 120 epochs: the accuracy kept rising as the cosine schedule annealed); without augmentation
#   it did. Fixed: SOURCE_PER_CLASS=200, SOURCE_AUGMENT=none (--augment none, both methods), EPOCHS=60,
#   SAVE_FREQ=4 (16 checkpoints with epoch 0). docs/results_fashion.md lists every pilot run.
# - vanilla and CTC as in the digits protocol: CTC's transferability setting, nce_k 256, stage two for the
#   last third (STAGE_TWO = 2/3 of EPOCHS: 40); seeds 0..SEEDS-1 (3), runs of a method differ only in seed.
# - Transfer: the 5-fold cross-validated linear probe (transfer.py --cv 5, 30 probe epochs, lr 0.4, probe
#   seed 0) over the first TARGET_PER_CLASS=200 training images of each fashion_b class and its 5,000 test
#   images pooled (6,000 images: binomial standard error 0.46 points at 85 %), and the same over all 897
#   digits_b images.
# - Discriminability and compression (discriminability.py) on the test splits of fashion_a, fashion_b and
#   digits_b, each with its own labels: Recall@1, NMI, NC1, effective rank and coding rate (eps^2 = 0.5) at
#   every checkpoint. MINE I(X;T) and I(T;Y) on the fashion_a and fashion_b test splits (the digits sizes),
#   and on fashion_b also held-out (HOLDOUT).
# - Decision rules, on the target fashion_b (scripts/results_table.py; the same for digits_b as a secondary
#   result): the digits protocol's smoothing, P and E; late drop, CTC lifting the final transfer and the MI
#   trends as there. Plus, for NC1, effective rank and coding rate on the target: the 95 % t-interval over
#   seeds of measure(E) - measure(P); a measure fell with the transfer when that interval lies entirely below
#   0 (the paper's over-compression predicts a fall of all three after P). And per seed, the Spearman
#   correlation across checkpoints between the unsmoothed target transfer and each unsmoothed measure; a
#   measure tracks transfer when the 95 % t-interval of the mean correlation over seeds excludes 0.
# - Every configuration tried is reported, not only one that shows the effect.
#
# Environment: DATA=digits|fashion (fashion: the protocol above; SCALE=cpu only), SCALE=cpu|gpu (gpu:
# resnext32_16x4d, cifar100 -> cinic10, 300 epochs with stage two at 200, a checkpoint every 2, nce_k 16384,
# the paper's MINE sizes, JOBS=1), TARGET2 SOURCE_PER_CLASS TARGET_PER_CLASS SOURCE_AUGMENT FEATURE_CACHE (fashion; the
# sweeps' --cache_dir, default save/features: each split's features are extracted once per checkpoint), SEEDS
# MODEL SOURCE TARGET EPOCHS STAGE_TWO SAVE_FREQ NCE_K CV (0: the plain probe) PROBE_EPOCHS MINE_XT_ITERS
# MINE_TY_ITERS MINE_XT_LR MINE_TY_LR MINE_BATCH MINE_HIDDEN MINE_WINDOW HOLDOUT DATA_FOLDER NUM_WORKERS JOBS (runs
# at once) THREADS (per run; default: the cores / JOBS) TRAIN_SPEED (training's speed flags; cpu:
# --channels_last, gpu: the CUDA defaults) PLOT (0: no figures) MINE (0: no MI sweeps) OUT (default
# figures/cpu_experiment, with DATA=fashion figures/cpu_experiment_fashion) WORKDIR.
# Idempotent: a rerun finds every run finished and every row written, and only redraws figures and table.
set -euo pipefail
SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
REPO="$(dirname "$(dirname "$SELF")")"
source "$REPO/scripts/setup_env.sh"
cd "${WORKDIR:-$REPO}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"   # python -m scripts.* from WORKDIR
export WORKDIR="$PWD"                    # absolute, for the per-run processes of JOBS > 1

SCALE="${SCALE:-cpu}"
DATA="${DATA:-digits}"
case "$DATA" in      # the data set's sizes; the SCALE defaults below fill the rest
  digits) ;;
  fashion) if [ "$SCALE" != cpu ]; then
             echo "error: DATA=fashion is a SCALE=cpu configuration, got SCALE=$SCALE." >&2; exit 2
           fi
           : "${SOURCE:=fashion_a}" "${TARGET:=fashion_b}" "${TARGET2=digits_b}" "${EPOCHS:=60}" "${SAVE_FREQ:=4}" \
             "${SOURCE_PER_CLASS=200}" "${TARGET_PER_CLASS=200}" "${SOURCE_AUGMENT=none}" \
             "${FEATURE_CACHE=save/features}" "${OUT:=figures/cpu_experiment_fashion}" ;;
  *) echo "error: DATA must be digits or fashion, got '$DATA'." >&2; exit 2 ;;
esac
TARGET2="${TARGET2:-}" SOURCE_PER_CLASS="${SOURCE_PER_CLASS:-}" TARGET_PER_CLASS="${TARGET_PER_CLASS:-}"
FEATURE_CACHE="${FEATURE_CACHE:-}" SOURCE_AUGMENT="${SOURCE_AUGMENT:-}"
LOGS="save/logs/cpu_experiment"
if [ "$DATA" != digits ]; then LOGS+="_$DATA"; fi
case "$SCALE" in
  cpu) : "${MODEL:=resnet8}" "${SOURCE:=digits_a}" "${TARGET:=digits_b}" "${EPOCHS:=90}" "${SAVE_FREQ:=3}" \
         "${NCE_K:=256}" "${MINE_XT_ITERS:=300}" "${MINE_TY_ITERS:=300}" "${MINE_XT_LR:=1e-4}" "${MINE_TY_LR:=1e-4}" \
         "${MINE_BATCH:=256}" "${MINE_HIDDEN:=128}" "${MINE_WINDOW:=50}" "${NUM_WORKERS:=0}" "${JOBS:=2}" "${HOLDOUT=0.5}"
       # the fastest CPU training variant within bench.py cpu's loss tolerance (docs/speed.md)
       : "${TRAIN_SPEED=--channels_last}" ;;
  gpu) : "${MODEL:=resnext32_16x4d}" "${SOURCE:=cifar100}" "${TARGET:=cinic10}" "${EPOCHS:=300}" "${SAVE_FREQ:=2}" \
         "${NCE_K:=16384}" "${MINE_XT_ITERS:=1e+4}" "${MINE_TY_ITERS:=2e+4}" "${MINE_XT_LR:=8e-5}" "${MINE_TY_LR:=1e-5}" \
         "${MINE_BATCH:=5000}" "${MINE_HIDDEN:=1024}" "${MINE_WINDOW:=500}" "${NUM_WORKERS:=8}" "${JOBS:=1}" "${HOLDOUT=}" \
         "${TRAIN_SPEED=}" ;;
  *) echo "error: SCALE must be cpu or gpu, got '$SCALE'." >&2; exit 2 ;;
esac
SEEDS="${SEEDS:-3}"
STAGE_TWO="${STAGE_TWO:-$((EPOCHS * 2 / 3))}"
CV="${CV:-5}"
PROBE_EPOCHS="${PROBE_EPOCHS:-30}"
DATA_FOLDER="${DATA_FOLDER:-./data}"
PLOT="${PLOT:-1}"
MINE="${MINE:-1}"
OUT="${OUT:-figures/cpu_experiment}"
for name in SEEDS EPOCHS STAGE_TWO SAVE_FREQ CV JOBS ${THREADS:+THREADS} ${SOURCE_PER_CLASS:+SOURCE_PER_CLASS} \
            ${TARGET_PER_CLASS:+TARGET_PER_CLASS}; do
  [[ "${!name}" =~ ^[0-9]+$ ]] || { echo "error: $name must be a whole number, got '${!name}'." >&2; exit 2; }
done
(( SEEDS >= 1 && JOBS >= 1 )) || { echo "error: SEEDS and JOBS must be at least 1." >&2; exit 2; }
THREADS="${THREADS:-$(( $(nproc) > JOBS ? $(nproc) / JOBS : 1 ))}"   # the cores shared among the runs at once
CV_FLAGS=()
if (( CV > 0 )); then CV_FLAGS=(--cv "$CV"); fi
transfer_stem() {   # transfer_stem TARGET: the stem of transfer.py's results file on TARGET
  local stem="transfer_$1_linear"
  if (( CV > 0 )); then stem+="_cv$CV"; fi
  echo "$stem"
}
TRANSFER="$(transfer_stem "$TARGET")"
TARGETS=("$TARGET" ${TARGET2:+"$TARGET2"})
MEASURED=("$SOURCE")                             # discriminability.py's data sets: with DATA=fashion the targets too
if [ "$DATA" = fashion ]; then MEASURED+=("${TARGETS[@]}"); fi
QUIET=()
if (( JOBS > 1 )); then QUIET=(--no_progress); fi   # progress bars would fill the log files

vanilla_run() { echo "${MODEL}_${SOURCE}_lr_0.05_trial_$1_vanilla"; }
ctc_run() { echo "${MODEL}_${SOURCE}_a0.5_b1.0_ctc_s$1"; }
# mine_steps DATASET [FLAG...]: append one_run's I(X;T) and I(T;Y) fits on DATASET to its `steps` (with its `sweep`).
mine_steps() {
  local dataset="$1" mode iters lr
  shift
  for mode in xt ty; do
    iters="MINE_${mode^^}_ITERS" lr="MINE_${mode^^}_LR"
    steps+=(:: mine.py --mode "$mode" --dataset "$dataset" --source_dataset "$SOURCE" --lr "${!lr}"
            --iter_num "${!iters}" --batch_size "$MINE_BATCH" --hidden_size "$MINE_HIDDEN" --window "$MINE_WINDOW"
            "$@" "${sweep[@]}")
  done
}

# one_run METHOD SEED: train (or resume, or find finished) one run, then every sweep on every checkpoint,
# all in one Python process (python -m scripts.run_steps).
one_run() {
  local method="$1" seed="$2" run dataset mode
  local common=(--dataset "$SOURCE" --model "$MODEL" --epochs "$EPOCHS" --save_freq "$SAVE_FREQ" --batch_size 64
                --learning_rate 0.05 --seed "$seed" --trial "$seed" --num_workers "$NUM_WORKERS"
                --data_folder "$DATA_FOLDER" --resume "${QUIET[@]}")
  if [ -n "$SOURCE_PER_CLASS" ]; then common+=(--train_per_class "$SOURCE_PER_CLASS"); fi
  if [ -n "$SOURCE_AUGMENT" ]; then common+=(--augment "$SOURCE_AUGMENT"); fi
  # shellcheck disable=SC2206  # TRAIN_SPEED holds speed flags, split on spaces
  common+=($TRAIN_SPEED)
  local steps=()
  if [ "$method" = vanilla ]; then
    run="$(vanilla_run "$seed")"
    steps=(train_vanilla.py "${common[@]}" --note vanilla)
  else
    run="$(ctc_run "$seed")"
    steps=(train_ctc.py "${common[@]}" --note "ctc_s$seed" --stage_two_epoch "$STAGE_TWO" -a 0.5 -b 1.0
           --weight_decay_coef 2.0 --instance_t 0.10 --instance_m 0.9 --nce_t 0.10 --nce_m 0.9 --nce_k "$NCE_K"
           --update_memory_bank)
  fi
  local sweep=(--ckpt_path "$run" --model "$MODEL" --start_epoch 0 --skip "$SAVE_FREQ" --num_workers "$NUM_WORKERS"
               --data_folder "$DATA_FOLDER" "${QUIET[@]}")
  if [ -n "$FEATURE_CACHE" ]; then sweep+=(--cache_dir "$FEATURE_CACHE"); fi   # each split extracted once per checkpoint
  for dataset in "${TARGETS[@]}"; do
    steps+=(:: transfer.py --source_dataset "$SOURCE" --target_dataset "$dataset" --epoch "$PROBE_EPOCHS"
            "${CV_FLAGS[@]}" "${sweep[@]}")
    if [ "$dataset" = "$TARGET" ] && [ -n "$TARGET_PER_CLASS" ]; then steps+=(--target_per_class "$TARGET_PER_CLASS"); fi
  done
  for dataset in "${MEASURED[@]}"; do
    steps+=(:: discriminability.py --dataset "$dataset" "${sweep[@]}")
  done
  if [ "$MINE" != 0 ]; then
    mine_steps "$SOURCE"
    mine_steps "$TARGET"
    if [ -n "$HOLDOUT" ]; then   # the same two fits on the target, scored on rows the critic never trained on
      mine_steps "$TARGET" --holdout "$HOLDOUT"
    fi
  fi
  OMP_NUM_THREADS="$THREADS" python -m scripts.run_steps "${steps[@]}"
}

# With JOBS > 1 every run is its own process (this script with --one), its output in a log file.
if [ "${1:-}" = --one ]; then
  log="$LOGS/$2_seed$3.log"
  mkdir -p "$(dirname "$log")"
  echo "== $2 seed $3: started (log: $log)"
  start=$SECONDS
  if ! one_run "$2" "$3" > "$log" 2>&1; then
    echo "error: $2 seed $3 failed; the end of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  echo "== $2 seed $3: done in $((SECONDS - start)) s"
  exit 0
fi

start=$SECONDS
echo "== cpu_experiment: SCALE=$SCALE DATA=$DATA $MODEL, $SOURCE${SOURCE_PER_CLASS:+ ($SOURCE_PER_CLASS per class)}" \
     "-> ${TARGETS[*]}, $SEEDS seeds x {vanilla, ctc}, $EPOCHS epochs (stage two at $STAGE_TWO), a checkpoint" \
     "every $SAVE_FREQ, probe ${TRANSFER}, $JOBS run(s) at once"
tasks=()
for ((seed = 0; seed < SEEDS; seed++)); do tasks+=(vanilla "$seed" ctc "$seed"); done
if (( JOBS == 1 )); then
  for ((i = 0; i < ${#tasks[@]}; i += 2)); do
    echo "== ${tasks[i]} seed ${tasks[i+1]}"
    one_run "${tasks[i]}" "${tasks[i+1]}"
  done
else
  export NO_SETUP=1 SCALE SEEDS MODEL SOURCE TARGET EPOCHS STAGE_TWO SAVE_FREQ NCE_K CV PROBE_EPOCHS MINE_XT_ITERS \
         MINE_TY_ITERS MINE_XT_LR MINE_TY_LR MINE_BATCH MINE_HIDDEN MINE_WINDOW DATA_FOLDER NUM_WORKERS JOBS THREADS \
         HOLDOUT DATA TARGET2 SOURCE_PER_CLASS TARGET_PER_CLASS SOURCE_AUGMENT FEATURE_CACHE TRAIN_SPEED MINE
  printf '%s\n' "${tasks[@]}" | xargs -n 2 -P "$JOBS" bash "$SELF" --one \
    || { echo "error: at least one run failed (see above); rerun this script to resume." >&2; exit 1; }
fi

vanilla=(); ctc=()
for ((seed = 0; seed < SEEDS; seed++)); do
  vanilla+=("save/model/$(vanilla_run "$seed")"); ctc+=("save/model/$(ctc_run "$seed")")
done
mkdir -p "$OUT"
echo "== results table -> $OUT/results_table.md"
python -m scripts.results_table --group vanilla "${vanilla[@]}" --group ctc "${ctc[@]}" \
    --transfer "$TRANSFER" --source "$SOURCE" --target "$TARGET" --out "$OUT/results_table.md"
if [ -n "$TARGET2" ]; then
  echo "== results table on the second target -> $OUT/results_table_$TARGET2.md"
  python -m scripts.results_table --group vanilla "${vanilla[@]}" --group ctc "${ctc[@]}" \
      --transfer "$(transfer_stem "$TARGET2")" --source "$SOURCE" --target "$TARGET2" \
      --out "$OUT/results_table_$TARGET2.md"
fi
if [ "$PLOT" != 0 ]; then
  echo "== figures (mean +- std over seeds) -> $OUT/"
  python "$REPO/plot.py" "${vanilla[@]}" "${ctc[@]}" --group_seeds --labels vanilla,ctc --out "$OUT"
fi
seconds=$((SECONDS - start))
printf '%s\t%s\t%s seeds\t%s epochs\tJOBS=%s\t%s s\n' "$(date -u +%FT%TZ)" "$SCALE" "$SEEDS" "$EPOCHS" "$JOBS" \
    "$seconds" >> "$OUT/timings.tsv"
echo "cpu_experiment done in $((seconds / 60)) min $((seconds % 60)) s: table $OUT/results_table.md, figures $OUT/," \
     "runs save/model/, logs $LOGS/ (wall times of every invocation: $OUT/timings.tsv)"
