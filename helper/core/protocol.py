"""What each command-line flag means for a run: one table, from which every set of flag names is derived.

A training run records its flags in `args.json` and in every checkpoint; a sweep records its flags beside
its results file. What a recorded flag is for decides what a change of it does:

- `RUN_NAME`:  it defines a training run and is part of its folder name (a change names another run);
- `PROTOCOL`:  it decides what a run's epochs or a sweep's rows compute (a change is refused on
               `--resume` and when appending rows to a results file);
- `EXECUTION`: it only says where, how fast or which part runs: device, workers, paths, progress, which
               checkpoints a sweep takes (a change is free).

The table sits at the bottom of the layers so that the training engine, the sweeps and the reports
all read it; tests/test_flags.py checks that every flag the scripts record has a row, and no other.
"""
from dataclasses import dataclass

RUN_NAME, PROTOCOL, EXECUTION = "run name", "protocol", "execution"
NO_LEGACY = object()      # the flag is as old as the recorded runs


@dataclass(frozen=True)
class Flag:
    """One flag's role in the training scripts (`train`) and in the sweeps (`sweep`); None where they
    do not have it. `legacy`: the value runs recorded before the flag existed had. `member`: transfer.py's
    flag that decides what a fine-tuned CAT member is (a saved one is reused only when they all agree)."""
    train: str | None = None
    sweep: str | None = None
    legacy: object = NO_LEGACY
    member: bool = False


def _rows(names, **role):
    return {name: Flag(**role) for name in names.split()}


FLAGS = {
    # ---- the training scripts (train_vanilla.py, train_ctc.py, distill_cat.py)
    **_rows("learning_rate trial note alpha beta teacher stage_two_loss kd_weight", train=RUN_NAME),
    **_rows("augment train_per_class epochs lr_decay_epochs lr_decay_rate min_lr_scale weight_decay momentum "
            "save_freq", train=PROTOCOL),
    "warmup_epochs": Flag(train=PROTOCOL, legacy=0),
    # train_ctc.py's objective and distill_cat.py's regression
    **_rows("alpha_it contrast_feat_dim instance_dim instance_m instance_t kd_T lambda_corr lambda_mutual nce_k "
            "nce_m nce_t stage_two_decay_rate stage_two_epoch train_projector update_memory_bank weight_decay_coef "
            "ce_weight teacher_model distill_weight teachers", train=PROTOCOL),
    **_rows("resume overwrite allow_arg_changes run_dir sync_bn print_freq", train=EXECUTION),
    # the original scripts' flags that change nothing, recorded when given
    **_rows("optimizer net_size original_lr_decay_epochs", train=EXECUTION),

    # ---- both
    **_rows("model dataset", train=RUN_NAME, sweep=PROTOCOL),
    "seed": Flag(train=PROTOCOL, sweep=PROTOCOL, member=True),     # also the fine-tuned head's init
    **_rows("batch_size mode", train=PROTOCOL, sweep=PROTOCOL),
    **_rows("amp", train=EXECUTION, sweep=PROTOCOL),       # a sweep's bf16 features are other numbers
    **_rows("device num_workers no_progress data_folder model_path tb_path channels_last compile loader",
            train=EXECUTION, sweep=EXECUTION),

    # ---- the sweeps (transfer.py, discriminability.py, mine.py)
    **_rows("ckpt_path start_epoch skip end_epoch force shard wait cache_dir extract_batch source_dataset",
            sweep=EXECUTION),
    **_rows("target_dataset epoch lr wd batch", sweep=PROTOCOL, member=True),
    **_rows("eval_split bn_mode cv target_per_class save_finetuned concat concat_paths probe_lr", sweep=PROTOCOL),
    **_rows("kmeans n_init train_split", sweep=PROTOCOL),
    **_rows("estimator iter_num hidden_size window ma_rate holdout layer tf32", sweep=PROTOCOL),
}


def _names(**wanted):
    return frozenset(name for name, flag in FLAGS.items()
                     if all(getattr(flag, key) == value for key, value in wanted.items()))


# Flags that name a training run's folder (a --resume that finds no run looks for one that differs only in them).
RUN_NAME_ARGS = _names(train=RUN_NAME)
# Flags that may differ on --resume: they change where and how fast a run executes, not what it computes.
RESUME_FREE_ARGS = _names(train=EXECUTION)
# Flags that say which checkpoints to take and how fast or where to compute, not what a sweep's row means.
SWEEP_FREE_ARGS = _names(sweep=EXECUTION)
# transfer.py's flags that decide what a fine-tuned member of a concatenation is.
FINETUNE_MEMBER_ARGS = _names(member=True)
# Flags added after runs were already written, with the value those runs had.
LEGACY_ARGS = {name: flag.legacy for name, flag in FLAGS.items() if flag.legacy is not NO_LEGACY}
