"""Rich representations (RRL; Zhang & Bottou, "Learning useful representations for shifting tasks and
distributions", ICML 2023): several networks side by side, transferred as one.

CATn concatenates the penultimate features of n networks (runs with other seeds, snapshots of one run,
other architectures). transfer.py transfers it with three protocols, one row each in
`transfer_<target>_concat.csv` (column `protocol`):

- linear    ("cat"):       a linear probe on the concatenated frozen features (`helper.sweep.transfer.concat_probe`);
- finetune  ("[init]cat"): the members side by side under one linear head, every weight trained (`ConcatNet`);
- two_stage ("[2ft]cat"):  each member fine-tuned on the target alone (saved, and reused by later
                           concatenations), then a linear probe on the fine-tuned members' features.

DISTILLn (distill_cat.py) trains one network to reproduce CATn's concatenated features (`CatRegression`).
"""
import os
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from helper.sweep import transfer as T
from helper.core.checkpoint import file_sha1, load_checkpoint
from helper.core.errors import UserError
from helper.core.protocol import FINETUNE_MEMBER_ARGS
from models.base import ImageClassifier



def finetune_flags(config):
    """{flag: value} of the transfer.py flags that decide what a fine-tuned member is (a saved one is reused
    only when they all agree with the ones it records), from a `TransferConfig`'s recorded flags."""
    return {flag: config.flags.get(flag) for flag in sorted(FINETUNE_MEMBER_ARGS)}


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
    models = [T.load_member(label, path, config.source, device)[0] for label, path in members]
    T.check_inputs(models, [label for label, _ in members], target["train"])
    return models


def finetune_concat(members, target, config, device):
    """[init]cat: the members side by side, a fresh seeded head, every weight fine-tuned on the target."""
    net = ConcatNet(load_members(members, target, config, device)).to(device)
    return {**T.probe_result(T.finetune(net, target, config, device)), "feat_size": net.feat_dim}


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
    out = T.finetuned_path(path, config.target_dataset)
    source_sha1 = file_sha1(path)
    if os.path.isfile(out):
        saved = load_checkpoint(out)
        differences = saved_finetune_differences(saved, source_sha1, config)
        if not differences:
            return out, saved.get("accuracy"), False
        if not config.force:
            raise UserError(f"{out} (member {label} fine-tuned on {config.target_dataset}) was made otherwise: "
                            f"{differences}. Pass the same flags to reuse it, or --force to fine-tune it again.")
    model, ckpt = T.load_member(label, path, config.source, device)
    T.check_inputs([model], [label], target["train"])
    row = T.probe_result(T.finetune(model, target, config, device))
    T.save_finetuned(model, ckpt.get("epoch") or 0, row["final_acc"], ckpt.get("arch") or config.source.arch,
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
    row = T.concat_probe(tuned, target, probe, device)
    return {**row, "members_acc": ";".join(f"{acc:.2f}" for acc in accs)}


PROTOCOLS = {"linear": T.concat_probe, "finetune": finetune_concat, "two_stage": two_stage}


# ------------------------------------------------------------------ DISTILLn
class CatRegression(nn.Module):
    """The DISTILL target: a linear map of the student's penultimate features (B, d) onto the
    teachers' concatenated features (B, D), scored by the mean squared error per feature."""

    def __init__(self, student_dim, teacher_dim):
        super().__init__()
        self.regressor = nn.Linear(student_dim, teacher_dim)

    def forward(self, student_features, teacher_features):
        return F.mse_loss(self.regressor(student_features).float(), teacher_features.float())
