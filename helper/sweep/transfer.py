"""What only transfer.py does with a checkpoint: the linear probe (plain, BatchNorm-train or
cross-validated), fine-tuning with its parameter-distance transferability, and the CAT
concatenation of several checkpoints (helper/sweep/rrl.py has its protocols).

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
from helper.core.checkpoint import (CheckpointError, file_sha1, list_checkpoints, load_checkpoint, model_checkpoint,
                                    model_state, model_weights, save_atomic)
from helper.core.errors import UserError
from helper.core.seed import set_seed
from helper.sweep.features import FeatureConfig, feature_loader, split_features
from helper.sweep.metrics import parameter_distance_transferability
from helper.sweep.probe import ProbeConfig, cross_validated_probe, probe_backbone, probe_cached
from helper.sweep.runner import warn
from helper.sweep.source_run import SourceConfig, load_source
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


def concat_members(run_dir, epochs, paths):
    """[(label, path)] of the CAT members: the `epochs` of this run (--concat), then the files of the
    comma-separated `paths` (--concat_paths).

    A run's snapshots are labelled by epoch, other files by their path; the same file twice is refused.
    """
    available = list_checkpoints(run_dir)
    members = []
    for epoch in epochs or []:
        if epoch not in available:
            raise UserError(f"--concat: ckpt_epoch_{epoch}.pth is not in {run_dir}.")
        members.append((str(epoch), available[epoch]))
    members += [(p, p) for p in (paths or "").split(",") if p.strip()]
    if len(members) < 2:
        raise UserError("concatenation needs at least two checkpoints: pass --concat E1,E2 "
                        "and/or --concat_paths p1,p2.")
    seen = {}
    for label, path in members:
        key = os.path.realpath(path)
        if key in seen:
            raise UserError(f"the concatenation names {path} twice ({seen[key]} and {label}): the same network "
                            "twice adds no feature. Pass each checkpoint once.")
        seen[key] = label
    return members


def load_member(label, path, source, device):
    """(frozen model, checkpoint) of one CAT member, loaded with `source` (a `SourceConfig`).

    Snapshots of the run (labelled by epoch) must be --model; other files (labelled by path) may be
    any architecture: the one they record, else --model.
    """
    arch = source.arch
    if label == path:
        ckpt = load_checkpoint(path)
        arch = (ckpt.get("arch") if isinstance(ckpt, dict) else None) or source.arch
    try:
        return load_source(path, source, device, arch=arch)
    except CheckpointError as err:
        raise UserError(f"concatenation member {label}: {err}") from None


def check_inputs(models, labels, dataset):
    """Refuse a member that cannot take the target's images (another input size or channel count)."""
    images = torch.stack([dataset[i][0] for i in range(min(2, len(dataset)))])
    for model, label in zip(models, labels):
        device = next(model.parameters()).device
        try:
            with torch.no_grad():
                model.eval().penultimate(images.to(device))
        except RuntimeError as err:
            raise UserError(f"concatenation member {label} cannot take {dataset.info.name}'s images of shape "
                            f"{tuple(images.shape[1:])} ({str(err).splitlines()[0]}); every member must accept "
                            "the target's input size.") from None


def concat_probe(members, target, config, device):
    """Linear probe on the concatenated frozen features of several checkpoints (CAT)."""
    train_parts, eval_parts = [], []
    for label, path in members:
        model, _ = load_member(label, path, config.source, device)
        check_inputs([model], [label], target["train"])
        (train_feats, train_labels), (eval_feats, eval_labels) = target_features(model, path, target, config,
                                                                                 device)
        train_parts.append(train_feats)
        eval_parts.append(eval_feats)
        del model
    train_feats, eval_feats = torch.cat(train_parts, dim=1), torch.cat(eval_parts, dim=1)
    result = probe_cached(train_feats, train_labels, eval_feats, eval_labels, config.train,
                          target["info"].num_classes, device, config.features.progress)
    return {**probe_result(result), "feat_size": train_feats.shape[1]}
