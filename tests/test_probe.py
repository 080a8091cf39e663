"""Feature extraction, the feature cache and the linear probe on a tiny CPU model."""
import importlib.util
import math
import os
import statistics
from dataclasses import replace

import pytest
import torch
from torch import nn

from helper.core.errors import UserError
from helper.sweep.features import cached_features, extract_features
from helper.sweep.probe import (ProbeConfig, cross_validated_probe, fold_summary, probe_backbone, probe_cached,
                                 stratified_folds)

try:
    from models.base import ImageClassifier
except ImportError:  # the zoo's __init__ may import modules still being written
    _spec = importlib.util.spec_from_file_location(
        "models_base_standalone", os.path.join(os.path.dirname(__file__), "..", "models", "base.py"))
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    ImageClassifier = _module.ImageClassifier

NUM_CLASSES = 4
PROBE = ProbeConfig(epochs=3, lr=0.1, batch_size=16, seed=3)


class TinyNet(ImageClassifier):
    """conv-BN-ReLU x2 -> global avgpool; stages (B,4,8,8), (B,8,8,8), (B,8)."""

    head_attr = "fc"

    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        torch.manual_seed(0)
        self.stage1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.feat_dim = 8
        self.fc = nn.Linear(8, num_classes)

    def forward_features(self, x, preact=False):
        f1 = self.stage1(x)
        f2 = self.stage2(f1)
        return [f1, f2, f2.mean(dim=(2, 3))]


class RandomImages(torch.utils.data.Dataset):
    """Random (3, 8, 8) images with random labels; items are (image, label, index)."""

    def __init__(self, n, seed):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, 8, 8, generator=generator)
        self.targets = torch.randint(0, NUM_CLASSES, (n,), generator=generator).tolist()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.targets[i], i


def loader(dataset):
    return torch.utils.data.DataLoader(dataset, batch_size=16, shuffle=False)


@pytest.fixture
def data():
    return RandomImages(64, seed=1), RandomImages(32, seed=2)


def test_extract_features_shapes_mode_and_layer(data):
    model, train_set = TinyNet(), data[0]
    model.train()
    features, labels = extract_features(model, loader(train_set), "cpu")
    assert features.shape == (64, 8) and features.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist() == train_set.targets
    assert model.training, "the previous train mode must be restored"

    stage0, _ = extract_features(model, loader(train_set), "cpu", layer=0)
    model.eval()
    with torch.no_grad():
        expected = model.forward_features(train_set.images)[0].flatten(1)
        pooled = model.penultimate(train_set.images)
    assert stage0.shape == (64, 4 * 8 * 8)
    torch.testing.assert_close(stage0, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(features, pooled, atol=1e-5, rtol=1e-5)
    with pytest.raises(UserError):
        extract_features(model, loader(train_set), "cpu", layer=5)


def test_cache_computes_once_and_reuses(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(6.0).view(3, 2), torch.tensor([0, 1, 2])

    key = {"checkpoint": "ckpt_epoch_2.pth", "mtime_ns": 123, "split": "train", "layer": -1}
    first = cached_features(str(tmp_path / "cache"), key, compute)
    second = cached_features(str(tmp_path / "cache"), dict(reversed(list(key.items()))), compute)
    assert len(calls) == 1, "same key (any order) must hit the cache"
    assert all(torch.equal(a, b) for a, b in zip(first, second)) and len(second) == 2
    cached_features(str(tmp_path / "cache"), {**key, "split": "test"}, compute)
    assert len(calls) == 2
    files = sorted(os.listdir(tmp_path / "cache"))
    assert len(files) == 2 and all(name.endswith(".pt") and len(name) == 43 for name in files)


def test_cached_probe_equals_backbone_probe_in_eval_mode(data):
    train_set, test_set = data
    model = TinyNet()
    train_feats, train_labels = extract_features(model, loader(train_set), "cpu")
    test_feats, test_labels = extract_features(model, loader(test_set), "cpu")
    cached = probe_cached(train_feats, train_labels, test_feats, test_labels, PROBE, device="cpu")
    backbone = probe_backbone(model, train_set, test_set, PROBE, bn_mode="eval", device="cpu")
    assert len(cached["history"]) == 3
    assert cached["final_acc"] == pytest.approx(backbone["final_acc"], abs=1e-4)
    torch.testing.assert_close(cached["head"].weight, backbone["head"].weight, atol=1e-4, rtol=0)
    torch.testing.assert_close(cached["head"].bias, backbone["head"].bias, atol=1e-4, rtol=0)
    workers = probe_backbone(model, train_set, test_set, PROBE, bn_mode="eval", num_workers=2, device="cpu")
    assert torch.equal(workers["head"].weight, backbone["head"].weight)   # workers load the same batches
    again = probe_cached(train_feats, train_labels, test_feats, test_labels, PROBE, device="cpu")
    assert torch.equal(again["head"].weight, cached["head"].weight), "a fixed seed must be reproducible"


def test_probe_learns_linearly_separable_features():
    generator = torch.Generator().manual_seed(0)
    centers = 3.0 * torch.eye(NUM_CLASSES, 8)

    def sample(n):
        labels = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
        return centers[labels] + 0.3 * torch.randn(n, 8, generator=generator), labels

    result = probe_cached(*sample(256), *sample(128), ProbeConfig(epochs=10, lr=0.1, batch_size=32), device="cpu")
    assert result["final_acc"] > 95.0, "chance is 25%"
    assert result["best_acc"] == max(result["history"])
    assert result["history"][result["best_epoch"]] == result["best_acc"]
    assert isinstance(result["head"], nn.Linear) and result["head"].out_features == NUM_CLASSES


def test_bn_train_mode_updates_running_stats_not_weights(data):
    train_set, test_set = data
    model = TinyNet()
    model.eval()
    conv_before = model.stage1[0].weight.detach().clone()
    running_mean_before = model.stage1[1].running_mean.clone()
    probe_backbone(model, train_set, test_set, replace(PROBE, epochs=1), bn_mode="train", device="cpu")
    assert not torch.allclose(model.stage1[1].running_mean, running_mean_before)
    assert torch.equal(model.stage1[0].weight, conv_before)
    assert not model.training, "the model's eval mode must be restored"
    assert all(p.requires_grad for p in model.parameters()), "requires_grad flags must be restored"
    with pytest.raises(UserError):
        probe_backbone(model, train_set, test_set, PROBE, bn_mode="frozen", device="cpu")


def test_stratified_folds_cover_every_sample_once_and_spread_each_class():
    labels = torch.tensor([0] * 7 + [1] * 5 + [2] * 3 + [3] * 11)
    folds = stratified_folds(labels, 4, seed=5)
    assert len(folds) == 4
    assert torch.equal(torch.sort(torch.cat(folds)).values, torch.arange(len(labels)))   # each once
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for c in range(4):
        per_fold = [int((labels[f] == c).sum()) for f in folds]
        assert sum(per_fold) == int((labels == c).sum()) and max(per_fold) - min(per_fold) <= 1
    assert all(torch.equal(a, b) for a, b in zip(folds, stratified_folds(labels, 4, seed=5)))     # seeded
    assert not all(torch.equal(a, b) for a, b in zip(folds, stratified_folds(labels, 4, seed=6)))


@pytest.mark.parametrize("k", [1, 27])
def test_stratified_folds_refuse_impossible_k(k):
    with pytest.raises(UserError, match="2 <= K"):
        stratified_folds(torch.zeros(26, dtype=torch.long), k)


def test_fold_summary_by_hand():
    mean, std, sem = fold_summary([80.0, 90.0, 100.0])
    assert mean == 90.0 and std == pytest.approx(10.0) and sem == pytest.approx(10.0 / math.sqrt(3))


def test_cross_validated_probe_is_the_mean_and_std_of_its_folds():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    feats = torch.randn(60, 5, generator=generator) + 2.0 * nn.functional.one_hot(labels, 5).float()
    result = cross_validated_probe(feats, labels, 3, PROBE, device="cpu")
    by_hand = []
    for test in stratified_folds(labels, 3, seed=PROBE.seed):
        train = torch.tensor([i not in set(test.tolist()) for i in range(60)])
        by_hand.append(probe_cached(feats[train], labels[train], feats[test], labels[test], PROBE, num_classes=3,
                                    device="cpu")["final_acc"])
    assert result["fold_acc"] == pytest.approx(by_hand) and result["folds"] == 3
    assert result["final_acc"] == pytest.approx(statistics.mean(by_hand))
    assert result["final_acc_std"] == pytest.approx(statistics.stdev(by_hand))
    assert result["final_acc_sem"] == pytest.approx(statistics.stdev(by_hand) / math.sqrt(3))
    assert result["final_acc"] > 60.0                      # separable classes: well above chance (33 %)
