"""Rich representations (RRL; Zhang & Bottou, "Learning useful representations for shifting tasks and
distributions", ICML 2023): several networks side by side, transferred as one. Everything transfer.py
does with a concatenation is here; the single-checkpoint probe and fine-tuning it reuses are
helper/sweep/transfer.py.

CATn concatenates the penultimate features of n networks (runs with other seeds, snapshots of one run,
other architectures). transfer.py transfers it with three protocols, one row each in
`transfer_<target>_concat.csv` (column `protocol`):

- linear    ("cat"):       a linear probe on the concatenated frozen features (`concat_probe`);
- finetune  ("[init]cat"): the members side by side under one linear head, every weight trained (`ConcatNet`);
- two_stage ("[2ft]cat"):  each member fine-tuned on the target alone (saved, and reused by later
                           concatenations), then a linear probe on the fine-tuned members' features.

DISTILLn (distill_cat.py) trains one network to reproduce CATn's concatenated features (`crd.CatRegression`).
"""
import os
from dataclasses import replace

import torch
from torch import nn

from helper.core.checkpoint import CheckpointError, file_sha1, list_checkpoints, load_checkpoint
from helper.core.errors import UserError
from helper.core.protocol import FINETUNE_MEMBER_ARGS
from helper.sweep.probe import probe_cached
from helper.sweep.source_run import load_source
from helper.sweep.transfer import finetune, finetuned_path, probe_result, save_finetuned, target_features
from models.base import ImageClassifier


def finetune_flags(config):
    """{flag: value} of the transfer.py flags that decide what a fine-tuned member is (a saved one is reused
    only when they all agree with the ones it records), from a `TransferConfig`'s recorded flags."""
    return {flag: config.flags.get(flag) for flag in sorted(FINETUNE_MEMBER_ARGS)}


# ------------------------------------------------------------------ the members
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


# ------------------------------------------------------------------ the protocols
class ConcatNet(ImageClassifier):
    """n networks side by side with one linear head: (B, 3, H, W) -> (B, sum of the members' feat_dim).

    The members keep their own weights and BatchNorm statistics; only their penultimate features are
    used (their source heads are ignored), so every member gets the gradient of the one head.
    """

    head_attr = "fc"

    def __init__(self, members, num_classes=1):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.feat_dim = sum(member.feat_dim for member in members)
        self.fc = nn.Linear(self.feat_dim, num_classes)

    def forward_features(self, x, preact=False):
        """[concatenated features (B, feat_dim)]: member 0's features first."""
        return [torch.cat([member.penultimate(x) for member in self.members], dim=1)]


def load_members(members, target, config, device):
    """The members' models (eval mode, on `device`), checked against the target's input."""
    models = [load_member(label, path, config.source, device)[0] for label, path in members]
    check_inputs(models, [label for label, _ in members], target["train"])
    return models


def finetune_concat(members, target, config, device):
    """[init]cat: the members side by side, a fresh seeded head, every weight fine-tuned on the target."""
    net = ConcatNet(load_members(members, target, config, device)).to(device)
    return {**probe_result(finetune(net, target, config, device)), "feat_size": net.feat_dim}


# ------------------------------------------------------------------ two-stage fine-tuning
def saved_finetune_differences(saved, source_sha1, config):
    """'' when the fine-tuned checkpoint `saved` (a loaded dict) was made from this source with `config`'s
    fine-tuning flags, else what differs (one line)."""
    recorded = saved.get("args") or {}
    if saved.get("finetuned_from") != source_sha1:
        return "its source checkpoint has changed since" if saved.get("finetuned_from") else \
            "it does not record its source checkpoint"
    return "; ".join(f"--{flag} was {recorded.get(flag)!r}, now {value!r}"
                     for flag, value in finetune_flags(config).items() if recorded.get(flag) != value)


def finetuned_member(label, path, target, config, device):
    """(path of the member fine-tuned on the target, its final accuracy, whether it was trained now).

    Reused when present with the same source and flags; a mismatch is refused unless --force, which
    fine-tunes that member again.
    """
    out = finetuned_path(path, config.target_dataset)
    source_sha1 = file_sha1(path)
    if os.path.isfile(out):
        saved = load_checkpoint(out)
        differences = saved_finetune_differences(saved, source_sha1, config)
        if not differences:
            return out, saved.get("accuracy"), False
        if not config.force:
            raise UserError(f"{out} (member {label} fine-tuned on {config.target_dataset}) was made otherwise: "
                            f"{differences}. Pass the same flags to reuse it, or --force to fine-tune it again.")
    model, ckpt = load_member(label, path, config.source, device)
    check_inputs([model], [label], target["train"])
    row = probe_result(finetune(model, target, config, device))
    save_finetuned(model, ckpt.get("epoch") or 0, row["final_acc"], ckpt.get("arch") or config.source.arch,
                     config, out, source_sha1)
    return out, row["final_acc"], True


def two_stage(members, target, config, device):
    """[2ft]cat: fine-tune each member alone (or reuse it), then linear-probe the concatenated
    features of the fine-tuned members with --probe_lr."""
    tuned, accs = [], []
    for label, path in members:
        out, acc, trained = finetuned_member(label, path, target, config, device)
        print(f"two_stage: member {label} {'fine-tuned' if trained else 'reused'}: {out}", flush=True)
        tuned.append((out, out))
        accs.append(acc)
    probe = replace(config, train=replace(config.train, lr=config.probe_lr))
    row = concat_probe(tuned, target, probe, device)
    return {**row, "members_acc": ";".join(f"{acc:.2f}" for acc in accs)}


PROTOCOLS = {"linear": concat_probe, "finetune": finetune_concat, "two_stage": two_stage}

