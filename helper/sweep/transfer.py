"""What transfer.py and discriminability.py share: source checkpoints, target data, frozen features,
and the per-checkpoint evaluations (linear probe, fine-tuning, CAT concatenation).

Every function takes the parsed `args` of one of the two scripts; the flags it reads are
the ones `add_feature_args` (and, for the probe, transfer.py) defines.
"""
import functools
import hashlib
import json
import os
import sys

import torch
import torch.nn.functional as F

from dataset import DATASETS, eval_loader, get_dataset, get_info, get_loader
from helper.core.checkpoint import (CheckpointError, list_checkpoints, load_checkpoint, model_checkpoint, model_state,
                                    model_weights, save_atomic)
from models import load_model
from helper.core.device import get_device
from helper.core.errors import UserError
from helper.sweep.features import cached_features, extract_features, file_fingerprint
from helper.cli.flags import NON_NEGATIVE_INT
from helper.train.loops import evaluate, train_one_epoch
from helper.sweep.metrics import parameter_distance_transferability
from helper.sweep.probe import cross_validated_probe, probe_backbone, probe_cached
from helper.train.schedule import cosine_lr, set_lr
from helper.core.seed import set_seed
from helper.cli.speed import LOADERS, add_layout_args, resolve_speed_args
from dataset.device_loader import gpu_loader_works
from helper.sweep.runner import select_epochs


def add_feature_args(parser, model_default=None):
    """Flags for loading checkpoints and extracting frozen features, shared by both sweeps."""
    from models import available_models
    g = parser.add_argument_group("model, data and features")
    g.add_argument("--model", default=model_default, choices=available_models(), metavar="MODEL",
                   help="architecture of the checkpoints, checked against the arch they record"
                        + (f" (default {model_default})" if model_default else " (default: what they record)"))
    g.add_argument("--data_folder", default="./data", help="root of the data sets (default ./data)")
    g.add_argument("--num_workers", type=NON_NEGATIVE_INT, default=min(8, os.cpu_count() or 1),
                   help="DataLoader worker processes")
    g.add_argument("--device", default=None, help="cuda, cuda:1, cpu; default: CUDA when present")
    g.add_argument("--extract_batch", type=int, default=256, help="batch size of feature extraction (default 256)")
    g.add_argument("--seed", type=int, default=0, help="seed of the probe head, its shuffle and k-means (default 0)")
    g.add_argument("--amp", action="store_true",
                   help="bf16 autocast on CUDA for feature extraction; default off: fp32 features as in the paper")
    g.add_argument("--no_amp", dest="amp", action="store_false", help="fp32 (the default here)")
    g.add_argument("--loader", default="auto", choices=LOADERS,
                   help="gpu: each evaluation split is uploaded once as uint8 and normalised on the device, so "
                        "no checkpoint pays DataLoader workers again; cpu: a DataLoader per checkpoint; auto "
                        "(default): gpu on CUDA for 32x32 array data sets that fit in half the free memory")
    add_layout_args(g, compile_help="torch.compile the frozen feature extraction (and mine.py's statistics "
                                    "network): compiled once per process and reused by every checkpoint; "
                                    "fine-tuning stays eager (default: off)")
    g.add_argument("--cache_dir", default=None,
                   help="keep extracted features here, keyed by checkpoint file (path, mtime, size), "
                        "data set and split, so reruns skip extraction (default: no cache)")
    return parser


def sweep_device(args):
    """The device of `--device`, with --channels_last/--compile settled for it (CUDA: channels_last on)."""
    device = get_device(args.device)
    resolve_speed_args(args, device, pick_loader=False)
    return device


def speed_kwargs(args):
    """The feature-extraction keywords of the speed flags (channels_last is applied at load)."""
    return {"amp": args.amp, "compile": bool(args.compile)}


def warn(message):
    """One 'warning: ...' line on stderr, as the sweep prints them."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ checkpoints
def check_run(run_dir, args):
    """Read the first readable selected checkpoint of the run before the sweep starts; return its dict.

    Catches a wrong `--model` once, as a user error (exit 2), instead of as a failure of every
    checkpoint. Unreadable files are left for the sweep to report; None when none is readable.
    A folder without checkpoints, or a selection of none, is a user error.
    """
    available = list_checkpoints(run_dir)
    if not available:
        raise UserError(f"{run_dir} holds no ckpt_epoch_<E>.pth files: nothing to sweep. Check --ckpt_path "
                        f"(a run folder under --model_path, or any path to one).")
    selected = select_epochs(available, args.start_epoch, args.skip, args.end_epoch)
    if not selected:
        raise UserError(f"--start_epoch {args.start_epoch} selects no checkpoint: the newest in {run_dir} is "
                        f"epoch {max(available)}.")
    for epoch in selected:
        if epoch not in available:
            continue
        try:
            return load_model(available[epoch], arch=args.model)[1]
        except CheckpointError as err:
            try:
                load_checkpoint(available[epoch])
            except CheckpointError:
                continue                    # unreadable: the sweep reports it
            raise UserError(str(err)) from None
    return None


def load_source(path, args, device, default_classes=None):
    """(frozen model in eval mode, checkpoint dict) of one source checkpoint, channels_last if asked.

    The source classes come from the checkpoint's metadata, else `default_classes`, else its
    head's shape: the head is discarded anyway, and only that number lets the weights load strictly.
    """
    model, ckpt = load_model(path, arch=args.model, default_classes=default_classes, device=device)
    if getattr(args, "channels_last", False):
        model = model.to(memory_format=torch.channels_last)
    return model.eval(), ckpt


def check_source(ckpt, source_dataset):
    """Warn once when the run's recorded source data set or class count disagrees with `source_dataset`."""
    if not isinstance(ckpt, dict):
        return
    recorded, classes = ckpt.get("dataset"), ckpt.get("num_classes")
    if recorded and recorded != source_dataset:
        warn(f"the checkpoints were trained on {recorded}, not on --source_dataset {source_dataset}.")
    elif classes and classes != DATASETS[source_dataset].num_classes:
        warn(f"the checkpoints have {classes} source classes, {source_dataset} has "
             f"{DATASETS[source_dataset].num_classes}.")


def source_acc(ckpt):
    """The source test accuracy a checkpoint records, or None."""
    value = ckpt.get("accuracy") if isinstance(ckpt, dict) else None
    return None if value is None else float(value)


# ------------------------------------------------------------------ data and features
def load_split(name, split, args, augment="none"):
    """One split of data set `name` (DataNotFoundError names the missing path)."""
    get_info(name, split)
    return get_dataset(name, split=split, augment=augment, root=args.data_folder,
                       download=split == DATASETS[name].train_split)


def feature_loader(dataset, args, device):
    """Unshuffled, unaugmented batches of `dataset` for feature extraction, by --loader (see its help).

    Built once per split and sweep (`_sweep_loader`), so a --loader gpu upload happens once, not
    once per checkpoint.
    """
    on_device = args.loader == "gpu" or (args.loader == "auto" and device.type == "cuda"
                                         and gpu_loader_works(dataset, device))
    return _sweep_loader(dataset, args.extract_batch, device, on_device, args.num_workers, bool(args.channels_last))


_sweep_loader = functools.lru_cache(maxsize=4)(eval_loader)


def split_features(model, dataset, ckpt_path, args, device, split):
    """(features (N, feat_dim) float32, labels (N,) int64) on CPU, in eval mode; cached with --cache_dir."""
    def compute():
        return extract_features(model, feature_loader(dataset, args, device), device,
                                progress=not args.no_progress, **speed_kwargs(args))

    if not args.cache_dir:
        return compute()
    key = {"checkpoint": file_fingerprint(ckpt_path), "dataset": dataset.info.name, "split": split,
           "root": os.path.abspath(args.data_folder), "layer": -1, "size": len(dataset), "amp": args.amp}
    return cached_features(args.cache_dir, key, compute)


# ------------------------------------------------------------------ per-checkpoint evaluations
def probe_kwargs(args, num_classes, device):
    return dict(num_classes=num_classes, epochs=args.epoch, lr=args.lr, weight_decay=args.wd, momentum=0.9,
                batch_size=args.batch, seed=args.seed, device=device, progress=not args.no_progress)


def probe_result(result):
    """The CSV fields of a `train_linear_probe` result (best_epoch counted from 1)."""
    return {"final_acc": result["final_acc"], "best_acc_on_eval": result["best_acc"],
            "best_epoch": result["best_epoch"] + 1}


def linear_probe(model, path, target, args, device):
    """The paper's protocol on one frozen checkpoint: a new linear head on the target's train split
    (with --cv K, `cv_linear_probe` instead)."""
    num_classes = target["info"].num_classes
    if getattr(args, "cv", None):
        return cv_linear_probe(model, path, target, args, device)
    if args.bn_mode == "train":
        result = probe_backbone(model, target["train"], target["eval"], bn_mode="train", num_workers=args.num_workers,
                                **speed_kwargs(args), **probe_kwargs(args, num_classes, device))
        return probe_result(result)
    train = split_features(model, target["train"], path, args, device, "train")
    test = split_features(model, target["eval"], path, args, device, args.eval_split)
    return probe_result(probe_cached(*train, *test, **probe_kwargs(args, num_classes, device)))


def cv_linear_probe(model, path, target, args, device):
    """--cv K: the linear probe cross-validated over the target's train and eval splits pooled.

    Features are extracted once per split (and cached as usual); all K folds reuse them. The folds
    depend only on the labels and --seed, so every checkpoint is scored on the same partition.
    """
    train_feats, train_labels = split_features(model, target["train"], path, args, device, "train")
    eval_feats, eval_labels = split_features(model, target["eval"], path, args, device, args.eval_split)
    kwargs = probe_kwargs(args, target["info"].num_classes, device)
    result = cross_validated_probe(torch.cat([train_feats, eval_feats]), torch.cat([train_labels, eval_labels]),
                                   args.cv, **kwargs)
    return {"final_acc": result["final_acc"], "final_acc_std": result["final_acc_std"],
            "final_acc_sem": result["final_acc_sem"], "folds": result["folds"],
            "best_acc_on_eval": result["best_acc"], "best_epoch": None}


def finetune(model, target, args, device):
    """Train every weight (new seeded head) on the augmented target train split; eval after each epoch."""
    set_seed(args.seed)
    model.reset_head(target["info"].num_classes)
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.wd)
    eval_loader = feature_loader(target["eval"], args, device)

    def compute_loss(batch):
        logits = model(batch[0])
        return F.cross_entropy(logits, batch[1]), logits, batch[1], {}

    history = []
    for epoch in range(1, args.epoch + 1):
        set_lr(optimizer, cosine_lr(args.lr, epoch, 1, args.epoch))
        loader = get_loader(target["train_aug"], args.batch, train=True, num_workers=args.num_workers,
                            seed=args.seed, epoch=epoch)
        train_one_epoch(model, loader, optimizer, compute_loss, device, epoch, progress=not args.no_progress)
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


def file_sha1(path):
    """The SHA-1 of a file's bytes: names a source checkpoint wherever its run folder is moved."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_finetuned(model, epoch, accuracy, arch, args, out, source_sha1=None):
    """Write a fine-tuned model to `out` as a checkpoint of `args.target_dataset`; with the SHA-1 of the
    checkpoint it was fine-tuned from, transfer.py --mode two_stage can tell when to reuse it."""
    saved = model_checkpoint(model, epoch, accuracy, arch, args.target_dataset, args)
    save_atomic({**saved, "finetuned_from": source_sha1} if source_sha1 else saved, out)


def finetune_checkpoint(model, epoch, init_state, target, args, device, run_dir, source_path=None):
    """Fine-tune one checkpoint; add param_transferability (the mean over blocks) and
    param_transferability_blocks (JSON {block: T}), both None without `init_state`, and
    with --save_finetuned write the fine-tuned weights (with the SHA-1 of `source_path`, so
    transfer.py --mode two_stage can reuse them)."""
    source_state = {k: v.detach().clone() for k, v in model_state(model).items()}
    row = probe_result(finetune(model, target, args, device))
    if init_state is not None:
        scores = param_transferability(init_state, source_state, model)
        row["param_transferability"] = scores["mean"]
        row["param_transferability_blocks"] = json.dumps(scores["blocks"])
    if args.save_finetuned:
        out = os.path.join(run_dir, f"finetuned_{args.target_dataset}", f"ckpt_epoch_{epoch}.pth")
        save_finetuned(model, epoch, row["final_acc"], args.model, args, out,
                       file_sha1(source_path) if source_path else None)
    return row


def concat_members(run_dir, args):
    """[(label, path)] of the CAT members: --concat epochs of this run, then --concat_paths files.

    A run's snapshots are labelled by epoch, other files by their path; the same file twice is refused.
    """
    available = list_checkpoints(run_dir)
    members = []
    for epoch in args.concat or []:
        if epoch not in available:
            raise UserError(f"--concat: ckpt_epoch_{epoch}.pth is not in {run_dir}.")
        members.append((str(epoch), available[epoch]))
    members += [(p, p) for p in (args.concat_paths or "").split(",") if p.strip()]
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


def load_member(label, path, args, device):
    """(frozen model, checkpoint) of one CAT member.

    Snapshots of the run (labelled by epoch) must be --model; other files (labelled by path) may be
    any architecture: the one they record, else --model.
    """
    arch = args.model
    if label == path:
        ckpt = load_checkpoint(path)
        arch = (ckpt.get("arch") if isinstance(ckpt, dict) else None) or args.model
    try:
        model, ckpt = load_model(path, arch=arch, device=device)
    except CheckpointError as err:
        raise UserError(f"concatenation member {label}: {err}") from None
    if getattr(args, "channels_last", False):
        model = model.to(memory_format=torch.channels_last)
    return model.eval(), ckpt


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


def concat_probe(members, target, args, device):
    """Linear probe on the concatenated frozen features of several checkpoints (CAT)."""
    train_parts, eval_parts = [], []
    for label, path in members:
        model, _ = load_member(label, path, args, device)
        check_inputs([model], [label], target["train"])
        train_feats, train_labels = split_features(model, target["train"], path, args, device, "train")
        eval_feats, eval_labels = split_features(model, target["eval"], path, args, device, args.eval_split)
        train_parts.append(train_feats)
        eval_parts.append(eval_feats)
        del model
    train_feats, eval_feats = torch.cat(train_parts, dim=1), torch.cat(eval_parts, dim=1)
    result = probe_cached(train_feats, train_labels, eval_feats, eval_labels,
                          **probe_kwargs(args, target["info"].num_classes, device))
    return {**probe_result(result), "feat_size": train_feats.shape[1]}
