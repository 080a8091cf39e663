"""The paper's transferability measure: a linear probe on a frozen backbone.

One training loop (`train_linear_probe`) serves both protocols; they differ only in
how a batch of training features is obtained:

- `probe_cached`: rows of a precomputed feature tensor (fast; the backbone is fixed);
- `probe_backbone`: the backbone runs on the images each batch, which allows
  `bn_mode='train'` (BatchNorm statistics keep updating, as in the original code).

`cross_validated_probe` repeats `probe_cached` over K stratified folds of one pooled
feature set, for targets whose evaluation split is too small to resolve a few points.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from helper.core.device import get_device
from helper.core.errors import UserError
from helper.sweep.features import features_fn, iter_batch_features, model_mode
from helper.core.meters import AverageMeter, accuracy
from helper.core.speed import autocast
from helper.core.stats import mean_std


@dataclass(frozen=True)
class ProbeConfig:
    """SGD settings of a new head trained on a target (transfer.py's linear probe, and its fine-tuning)."""
    epochs: int = 30
    lr: float = 0.4                 # initial learning rate, cosine-annealed to 0
    weight_decay: float = 5e-4
    batch_size: int = 512
    seed: int = 0                   # the head's init and the shuffle (and the cross-validation folds)
    momentum: float = 0.9


def seeded_linear(feat_dim, num_classes, seed):
    """`nn.Linear(feat_dim, num_classes)` whose init depends only on `seed` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(feat_dim, num_classes)


def train_linear_probe(feature_batches, n_train, train_labels, eval_fn, feat_dim, num_classes, config=ProbeConfig(),
                       device=None, progress=False):
    """Train a fresh linear head on frozen features with `config`'s settings; evaluate it after every epoch.

    feature_batches(list of idx (B,) int64 CPU) yields the features (B, feat_dim) of those
    index batches in order, without grad (a generator, so a DataLoader's workers can prefetch).
    eval_fn(head) -> test accuracy in percent. SGD with momentum and weight decay,
    cosine LR per epoch down to 0, a seeded shuffle each epoch.
    Returns {'final_acc', 'best_acc', 'best_epoch', 'history', 'head'}.
    """
    epochs, batch_size, seed = config.epochs, config.batch_size, config.seed
    if epochs < 1 or batch_size < 1:
        raise UserError(f"The linear probe needs epochs >= 1 and batch size >= 1 (got {epochs} and {batch_size}).")
    if n_train < 1 or len(train_labels) != n_train:
        raise UserError(f"The linear probe needs a non-empty training set with one label per sample "
                        f"(got {n_train} samples and {len(train_labels)} labels).")
    device = torch.device(device) if device is not None else get_device()
    labels_on_device = torch.as_tensor(train_labels, dtype=torch.long).to(device)
    head = seeded_linear(feat_dim, num_classes, seed).to(device)
    optimizer = torch.optim.SGD(head.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0.0)
    shuffle_generator = torch.Generator().manual_seed(seed)
    history = []
    for _ in tqdm(range(epochs), desc="linear probe", disable=not progress, leave=False):
        order = torch.randperm(n_train, generator=shuffle_generator)
        index_batches = list(order.split(batch_size))
        # One host-to-device copy of the epoch's order: a pageable copy per step would sync every step.
        label_batches = labels_on_device[order.to(device)].split(batch_size)
        for labels, features in zip(label_batches, feature_batches(index_batches)):
            features = features.to(device).float()
            loss = F.cross_entropy(head(features), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
        with torch.no_grad():
            history.append(float(eval_fn(head)))
    best_epoch = max(range(epochs), key=lambda epoch: history[epoch])
    return {"final_acc": history[-1], "best_acc": history[best_epoch], "best_epoch": best_epoch,
            "history": history, "head": head}


def infer_num_classes(*label_tensors):
    """1 + the largest label seen, for label tensors (N,)."""
    return int(max(int(labels.max()) for labels in label_tensors if len(labels))) + 1


def probe_cached(train_feats, train_labels, test_feats, test_labels, config=ProbeConfig(), num_classes=None,
                 device=None, progress=False, eval_batch_size=4096):
    """Linear probe with `config`'s settings on precomputed features: train (N, D) / (N,), test (M, D) / (M,).

    `num_classes` defaults to 1 + the largest label.
    """
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise UserError(f"Cached probe features must be (N, D) with the same D for train and test "
                        f"(got {tuple(train_feats.shape)} and {tuple(test_feats.shape)}).")
    device = torch.device(device or get_device())
    train_on_device = train_feats.to(device, torch.float32)
    test_on_device = test_feats.to(device, torch.float32)
    test_labels_on_device = torch.as_tensor(test_labels, dtype=torch.long).to(device)
    num_classes = num_classes or infer_num_classes(torch.as_tensor(train_labels), test_labels_on_device)

    def feature_batches(index_batches):
        """Rows of the device copy (a plain tensor: no grad); the epoch's indices cross to the device once."""
        order = torch.cat(index_batches).to(device)
        return (train_on_device[idx] for idx in order.split([len(idx) for idx in index_batches]))

    def eval_fn(head):
        batches = zip(test_on_device.split(eval_batch_size), test_labels_on_device.split(eval_batch_size))
        return percent_correct(head, batches)

    return train_linear_probe(feature_batches, len(train_feats), train_labels, eval_fn, train_feats.shape[1],
                              num_classes, config, device, progress)


def percent_correct(head, feature_label_batches):
    """Top-1 accuracy in percent of `head` over an iterable of (features (B, D), labels (B,))."""
    meter = AverageMeter()
    for features, labels in feature_label_batches:
        meter.update(accuracy(head(features), labels)[0], labels.numel())
    return meter.avg


def dataset_labels(dataset):
    """Labels (N,) int64 of a map-style data set: its `targets` when present, else item [1] of each sample."""
    targets = getattr(dataset, "targets", None)
    if targets is None or len(targets) != len(dataset):
        targets = [dataset[i][1] for i in range(len(dataset))]
    return torch.as_tensor(targets, dtype=torch.long)


def parameter_fingerprint(model):
    """(P, 2) float64: sum and squared sum of each parameter; a cheap check that nothing moved."""
    return torch.stack([torch.stack([p.detach().double().sum(), p.detach().double().square().sum()]).cpu()
                        for p in model.parameters()])


def probe_backbone(model, train_set, test_set, config=ProbeConfig(), bn_mode="eval", amp=False, compile=False,
                   num_workers=0, num_classes=None, device=None, progress=False):
    """Linear probe with `config`'s settings that runs the frozen backbone on the images each batch.

    bn_mode='eval': backbone in eval mode (same result as `probe_cached`);
    bn_mode='train': backbone in train mode while featurizing, so BatchNorm running
    statistics keep updating (the original protocol). Parameters are frozen in both
    (checked afterwards, MoCo-style, from a cheap per-parameter fingerprint);
    evaluation on `test_set` always uses eval mode. `amp`, `compile`: bf16 autocast and
    torch.compile for the backbone's forward. The model's mode and
    requires_grad flags are restored afterwards.
    """
    if bn_mode not in ("eval", "train"):
        raise UserError(f"bn_mode must be 'eval' or 'train' (got {bn_mode!r}).")
    device = torch.device(device or get_device())
    train_labels = dataset_labels(train_set)
    num_classes = num_classes or infer_num_classes(train_labels, dataset_labels(test_set))
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=config.batch_size,
                                              shuffle=False, num_workers=num_workers)

    featurize = features_fn(compile)

    def feature_batches(index_batches):
        """The backbone's features of each index batch; images loaded by DataLoader workers, in order."""
        loader = torch.utils.data.DataLoader(train_set, batch_sampler=index_batches, num_workers=num_workers)
        for batch in loader:
            with torch.no_grad(), model_mode(model, training=bn_mode == "train"), autocast(device, amp):
                features = featurize(model, batch[0].to(device, non_blocking=True))
            yield features            # outside the contexts: grad and autocast modes are global

    def eval_fn(head):
        with model_mode(model, training=False):
            return percent_correct(head, iter_batch_features(model, test_loader, device, amp=amp, compile=compile))

    grad_flags = [p.requires_grad for p in model.parameters()]
    before = parameter_fingerprint(model)
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        result = train_linear_probe(feature_batches, len(train_set), train_labels, eval_fn, model.feat_dim,
                                    num_classes, config, device, progress)
    finally:
        for p, flag in zip(model.parameters(), grad_flags):
            p.requires_grad_(flag)
    if not torch.equal(before, parameter_fingerprint(model)):
        raise RuntimeError("The backbone's parameters changed during the linear probe; it must stay frozen.")
    return result


def stratified_folds(labels, k, seed=0):
    """K disjoint index tensors (int64) that together hold every sample exactly once, each class spread evenly.

    Each class's samples are shuffled (seeded), the classes laid end to end, and position p goes to
    fold p mod k: per class, and in total, fold sizes differ by at most one. The same labels and
    seed give the same folds, so every checkpoint of a sweep is scored on the same partition.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    if k < 2 or k > len(labels):
        raise UserError(f"Cross-validation needs 2 <= K <= the number of samples (got K = {k} for {len(labels)} "
                        "samples).")
    generator = torch.Generator().manual_seed(seed)
    order = torch.cat([members[torch.randperm(len(members), generator=generator)]
                       for members in (torch.nonzero(labels == c).flatten() for c in torch.unique(labels))])
    fold_of = torch.empty(len(labels), dtype=torch.long)
    fold_of[order] = torch.arange(len(labels)) % k
    return [torch.nonzero(fold_of == fold).flatten() for fold in range(k)]


def fold_summary(values):
    """(mean, sample std (n - 1), standard error std / sqrt(n)) of per-fold accuracies."""
    mean, std = mean_std(values)
    return mean, std, std / math.sqrt(len(values))


def cross_validated_probe(feats, labels, k, config=ProbeConfig(), num_classes=None, device=None, progress=False):
    """K-fold linear probe with `config`'s settings on one pooled feature set: feats (N, D), labels (N,).

    Each fold of `stratified_folds(labels, k, config.seed)` is the test set once, a fresh head (seed
    `config.seed`) trained on the other K - 1 folds with `probe_cached`. Returns
    {'final_acc': mean over folds, 'final_acc_std': their sample std, 'final_acc_sem': std / sqrt(K),
    'best_acc': mean of each fold's best epoch, 'fold_acc': [K final accuracies], 'folds': K}.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(feats) != len(labels):
        raise UserError(f"Cross-validation needs one label per feature row (got {len(feats)} rows and "
                        f"{len(labels)} labels).")
    num_classes = num_classes or infer_num_classes(labels)
    finals, bests = [], []
    for test in stratified_folds(labels, k, config.seed):
        train = torch.ones(len(labels), dtype=torch.bool)
        train[test] = False
        result = probe_cached(feats[train], labels[train], feats[test], labels[test], config, num_classes, device,
                              progress)
        finals.append(result["final_acc"])
        bests.append(result["best_acc"])
    mean, std, sem = fold_summary(finals)
    return {"final_acc": mean, "final_acc_std": std, "final_acc_sem": sem, "best_acc": sum(bests) / k,
            "fold_acc": finals, "folds": k}
