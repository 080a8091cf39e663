"""What only transfer.py does with a checkpoint: the linear probe (plain, BatchNorm-train or
cross-validated) and fine-tuning with its parameter-distance transferability (the concatenation of
several checkpoints, CAT, is helper/sweep/rrl.py).

The sweep toolkit they build on (opening a run, a split's cached features, the results file) is
helper/sweep/source_run.py, features.py and runner.py, shared with discriminability.py and mine.py.
Every function takes a `TransferConfig`, built once in transfer.py's main.
"""
import json
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from dataset import get_loader
from helper.core.checkpoint import (CheckpointError, file_sha1, load_checkpoint, model_checkpoint, model_state,
                                    model_weights, save_atomic)
from helper.core.errors import warn
from helper.core.seed import set_seed
from helper.sweep.features import FeatureConfig, feature_loader, split_features
from helper.sweep.metrics import parameter_distance_transferability
from helper.sweep.probe import ProbeConfig, cross_validated_probe, probe_backbone, probe_cached
from helper.sweep.source_run import SourceConfig
from helper.train.loops import evaluate, train_one_epoch
from helper.train.schedule import cosine_lr, set_lr


@dataclass(frozen=True)
class TransferConfig:
    """What transfer.py does with each checkpoint: the target, the protocol, and its training settings."""
    target_dataset: str
    eval_split: str                 # the target split accuracy is reported on
    mode: str = "linear"            # linear, finetune or two_stage (concatenations only)
    train: ProbeConfig = ProbeConfig()      # the new head's SGD settings (fine-tuning: every weight's)
    bn_mode: str = "eval"           # linear: eval (features cached) or train (the original's BatchNorm updates)
    cv: int | None = None           # K: the linear probe cross-validated over K folds of train + eval
    target_per_class: int | None = None     # only the first images of each class of the target's train split
    probe_lr: float = ProbeConfig.lr    # two_stage: the learning rate of the final probe on the fine-tuned members
    save_finetuned: bool = False    # finetune: write the fine-tuned weights beside the run
    force: bool = False             # two_stage: fine-tune a member again when its saved one was made otherwise
    features: FeatureConfig = FeatureConfig()
    source: SourceConfig = SourceConfig()
    flags: dict = field(default_factory=dict, compare=False)   # the script's flags, recorded in saved checkpoints


# ------------------------------------------------------------------ per-checkpoint evaluations
def target_features(model, path, target, config, device):
    """((train features, labels), (eval features, labels)) of the frozen `model` (checkpoint `path`) on the
    target's unaugmented splits; cached with --cache_dir."""
    return tuple(split_features(lambda: model, target[part], split, path, config.features, device)
                 for part, split in (("train", "train"), ("eval", config.eval_split)))


def probe_result(result):
    """The CSV fields of a `train_linear_probe` result (best_epoch counted from 1)."""
    return {"final_acc": result["final_acc"], "best_acc_on_eval": result["best_acc"],
            "best_epoch": result["best_epoch"] + 1}


def linear_probe(model, path, target, config, device):
    """The paper's protocol on one frozen checkpoint: a new linear head on the target's train split
    (with --cv K, `cv_linear_probe` instead)."""
    num_classes = target["info"].num_classes
    if config.cv:
        return cv_linear_probe(model, path, target, config, device)
    if config.bn_mode == "train":
        features = config.features
        result = probe_backbone(model, target["train"], target["eval"], config.train, bn_mode="train",
                                amp=features.amp, compile=features.compile, num_workers=features.num_workers,
                                num_classes=num_classes, device=device, progress=features.progress)
        return probe_result(result)
    train, test = target_features(model, path, target, config, device)
    return probe_result(probe_cached(*train, *test, config.train, num_classes, device, config.features.progress))


def cv_linear_probe(model, path, target, config, device):
    """--cv K: the linear probe cross-validated over the target's train and eval splits pooled.

    Features are extracted once per split (and cached as usual); all K folds reuse them. The folds
    depend only on the labels and --seed, so every checkpoint is scored on the same partition.
    """
    (train_feats, train_labels), (eval_feats, eval_labels) = target_features(model, path, target, config, device)
    result = cross_validated_probe(torch.cat([train_feats, eval_feats]), torch.cat([train_labels, eval_labels]),
                                   config.cv, config.train, target["info"].num_classes, device,
                                   config.features.progress)
    return {"final_acc": result["final_acc"], "final_acc_std": result["final_acc_std"],
            "final_acc_sem": result["final_acc_sem"], "folds": result["folds"],
            "best_acc_on_eval": result["best_acc"], "best_epoch": None}


def finetune(model, target, config, device):
    """Train every weight (new seeded head) on the augmented target train split; eval after each epoch."""
    train, features = config.train, config.features
    set_seed(train.seed)
    model.reset_head(target["info"].num_classes)
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum,
                                weight_decay=train.weight_decay)
    eval_loader = feature_loader(target["eval"], features, device)

    def compute_loss(batch):
        logits = model(batch[0])
        return F.cross_entropy(logits, batch[1]), logits, batch[1], {}

    history = []
    for epoch in range(1, train.epochs + 1):
        set_lr(optimizer, cosine_lr(train.lr, epoch, 1, train.epochs))
        loader = get_loader(target["train_aug"], train.batch_size, train=True, num_workers=features.num_workers,
                            seed=train.seed, epoch=epoch)
        train_one_epoch(model, loader, optimizer, compute_loss, device, epoch, progress=features.progress)
        history.append(evaluate(model, eval_loader, device)["acc1"])
    best = max(range(len(history)), key=history.__getitem__)
    return {"final_acc": history[-1], "best_acc": history[best], "best_epoch": best}


def load_init_state(run_dir):
    """The run's initialisation (ckpt_epoch_0.pth) for param_transferability, loaded once per sweep.

    Missing or unreadable: a warning and None (the column stays empty), so one bad file
    never turns every fine-tuned checkpoint of the sweep into a failure.
    """
    path = os.path.join(run_dir, "ckpt_epoch_0.pth")
    if not os.path.isfile(path):
        warn(f"{path} (the initialisation) is missing: the param_transferability column stays empty.")
        return None
    try:
        init = load_checkpoint(path)
    except CheckpointError as err:
        warn(f"{err} The param_transferability column stays empty.")
        return None
    return model_weights(init)


def param_transferability(init_state, source_state, model):
    """Per-block T of "Rethinking Two Consensuses of Transferability" between init, source and fine-tuned."""
    return parameter_distance_transferability(init_state, source_state, model_state(model),
                                              exclude=(model.head_attr + ".",))


def finetuned_path(path, target_dataset):
    """<source checkpoint's folder>/finetuned_<target>/<its file name>: where a fine-tuned checkpoint is kept,
    by --save_finetuned and by --mode two_stage, which reuses it."""
    return os.path.join(os.path.dirname(os.path.abspath(path)), f"finetuned_{target_dataset}",
                        os.path.basename(path))


def save_finetuned(model, epoch, accuracy, arch, config, out, source_sha1):
    """Write a fine-tuned model to `out` as a checkpoint of the target (recording `config.flags`), with the
    SHA-1 of the checkpoint it was fine-tuned from, so transfer.py --mode two_stage can tell when to reuse it."""
    saved = model_checkpoint(model, epoch, accuracy, arch, config.target_dataset, config.flags)
    save_atomic({**saved, "finetuned_from": source_sha1}, out)


def finetune_checkpoint(model, epoch, init_state, target, config, device, source_path):
    """Fine-tune the checkpoint at `source_path`; add param_transferability (the mean over blocks) and
    param_transferability_blocks (JSON {block: T}), both None without `init_state`, and
    with --save_finetuned write the fine-tuned weights (with the SHA-1 of `source_path`, so
    transfer.py --mode two_stage can reuse them)."""
    source_state = None if init_state is None else {k: v.detach().clone() for k, v in model_state(model).items()}
    row = probe_result(finetune(model, target, config, device))
    if init_state is not None:
        scores = param_transferability(init_state, source_state, model)
        row["param_transferability"] = scores["mean"]
        row["param_transferability_blocks"] = json.dumps(scores["blocks"])
    if config.save_finetuned:
        save_finetuned(model, epoch, row["final_acc"], config.source.arch, config,
                       finetuned_path(source_path, config.target_dataset), file_sha1(source_path))
    return row
