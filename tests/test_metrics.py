"""Discriminability metrics, the compression measures (NC1, effective rank, coding rate) against known answers,
parameter-distance transferability and top-k accuracy."""
import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score
from torch import nn

from helper.core.errors import UserError
from helper.sweep.metrics import (CODING_RATE_EPS2, coding_rate, conv_blocks, effective_rank, nc1, nmi_kmeans,
                                  parameter_distance_transferability, recall_at_1)
from helper.core.meters import AverageMeter, accuracy, topk_correct
from models import create_model


def brute_force_recall_at_1(features, labels):
    """Reference: full cosine-similarity matrix in numpy, diagonal excluded."""
    normalized = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = normalized @ normalized.T
    np.fill_diagonal(similarity, -np.inf)
    return 100.0 * np.mean(labels[similarity.argmax(axis=1)] == labels)


@pytest.mark.parametrize("rows, dim, classes, block_sizes", [(50, 6, 3, (7, 1024)), (2500, 32, 20, (333, 1024, 4096))])
def test_recall_at_1_matches_brute_force_across_blocks(rows, dim, classes, block_sizes):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(rows, dim)).astype(np.float32)
    labels = rng.integers(0, classes, size=rows)
    expected = brute_force_recall_at_1(features.astype(np.float64), labels)
    assert 0.0 < expected < 100.0
    for block_size in block_sizes:
        assert recall_at_1(torch.from_numpy(features), torch.from_numpy(labels),
                           block_size=block_size) == pytest.approx(expected)


def test_nc1_is_zero_for_collapsed_classes_and_the_closed_form_otherwise():
    means = torch.tensor([[3.0, 0.0, 1.0], [-1.0, 2.0, 0.0], [0.0, -2.0, 5.0]])
    labels = torch.tensor([0, 1, 2] * 7)
    assert nc1(means[labels], labels) == pytest.approx(0.0, abs=1e-12)
    # 1-D, two classes at -1 and +1, within-class deviations +-a: Sigma_B = 1, Sigma_W = a^2, NC1 = a^2 / 2
    a = 0.3
    x = torch.tensor([-1 - a, -1 + a, 1 - a, 1 + a], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    assert nc1(x[:, None], labels) == pytest.approx(a * a / 2, rel=1e-12)
    # two more dimensions of within-class spread orthogonal to the class means do not count; scale does not either
    spread = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 7.0], [0.0, -7.0]], dtype=torch.float64)
    assert nc1(100 * torch.cat([x[:, None], spread], dim=1), labels) == pytest.approx(a * a / 2, rel=1e-9)
    with pytest.raises(UserError, match="at least 2 classes"):
        nc1(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))


def test_effective_rank_of_isotropic_low_rank_and_known_spectra():
    generator = torch.Generator().manual_seed(0)
    isotropic = torch.randn(20000, 16, generator=generator)
    assert 15.8 < effective_rank(isotropic) <= 16
    for r in (1, 3, 7):
        low_rank = torch.randn(500, r, generator=generator) @ torch.randn(r, 16, generator=generator)
        assert 0.9 < effective_rank(low_rank) <= r
    # singular values 2 and 2 (and 0): exactly 2; singular values 3 and 1: p = (3/4, 1/4)
    assert effective_rank(torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])) == pytest.approx(2.0, rel=1e-12)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(10 * torch.tensor([[3.0, 0.0], [0.0, 1.0]])) == pytest.approx(expected, rel=1e-12)
    assert effective_rank(torch.zeros(4, 3)) == 0.0


def test_coding_rate_against_its_closed_form():
    d, eps2 = 6, CODING_RATE_EPS2
    # every basis vector twice, at any length: Z^T Z = 2 I over N = 2d rows -> R = d/2 log(1 + 1/eps^2)
    z = torch.cat([torch.eye(d), 3 * torch.eye(d)])
    assert coding_rate(z) == pytest.approx(d / 2 * math.log(1 + 1 / eps2), rel=1e-12)
    # all rows the same direction: Z^T Z = N u u^T -> R = 1/2 log(1 + d / eps^2), whatever N
    same = torch.randn(1, d).repeat(50, 1) * torch.rand(50, 1)
    assert coding_rate(same) == pytest.approx(0.5 * math.log(1 + d / eps2), rel=1e-9)
    assert coding_rate(z, eps2=0.1) == pytest.approx(d / 2 * math.log(1 + 10), rel=1e-12)
    with pytest.raises(UserError, match=r"N >= 2"):
        coding_rate(torch.randn(1, d))


def test_recall_at_1_is_100_on_duplicated_points_and_rejects_bad_input():
    features = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    assert recall_at_1(features, torch.tensor([0, 0, 1, 1])) == 100.0
    assert recall_at_1(features, torch.tensor([0, 1, 0, 1])) == 0.0
    with pytest.raises(UserError):
        recall_at_1(features, torch.tensor([0, 1]))


def test_nmi_kmeans_matches_sklearn():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(60, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=60)
    normalized = features / np.linalg.norm(features, axis=1, keepdims=True)
    clusters = KMeans(n_clusters=3, random_state=4, n_init=5).fit_predict(normalized)
    expected = normalized_mutual_info_score(labels, clusters)
    assert nmi_kmeans(features, labels, n_init=5, seed=4, backend="sklearn") == pytest.approx(expected)


def test_nmi_kmeans_is_one_on_perfect_clusters():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(4), 10)
    features = 10.0 * np.eye(4, 6)[labels] + 0.01 * rng.normal(size=(40, 6))
    value = nmi_kmeans(torch.from_numpy(features), torch.from_numpy(labels))
    assert isinstance(value, float) and value == pytest.approx(1.0)


class Block(nn.Module):
    """A residual block with two convolutions and, optionally, a shortcut convolution."""

    def __init__(self, shortcut=False):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(2, 2, 3, bias=False), nn.Conv2d(2, 2, 1, bias=False)
        self.downsample = nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.BatchNorm2d(2)) if shortcut else None


class TwoBlockNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, bias=False)
        self.layer1 = nn.Sequential(Block(), Block(shortcut=True))
        self.fc = nn.Linear(2, 3)


def filled(values, default):
    """A TwoBlockNet state dict in float64 (exact decimals): every tensor `default`, except the keys in `values`."""
    state = {k: torch.full_like(v, default, dtype=torch.float64) for k, v in TwoBlockNet().state_dict().items()}
    for key, value in values.items():
        state[key] = value if torch.is_tensor(value) else torch.full_like(state[key], value)
    return state


def hand_built_triple():
    """init all 0, source all 1, fine-tuned: the constants below (one conv of mixed sign)."""
    signs = torch.ones(2, 2, 1, 1, dtype=torch.float64)
    signs[0] = -1
    finetuned = filled({"conv1.weight": 0.5, "layer1.0.conv1.weight": 0.9, "layer1.0.conv2.weight": 0.7,
                        "layer1.1.conv1.weight": 0.6, "layer1.1.conv2.weight": 0.2 * signs,
                        "layer1.1.downsample.0.weight": 100.0, "fc.weight": 50.0}, 0.3)
    return filled({}, 0.0), filled({}, 1.0), finetuned


def test_parameter_distance_transferability_by_hand():
    """Per conv the mean |difference|; per block mean(D(r, B)) / mean(D(A, B)); shortcut and head out."""
    init, source, finetuned = hand_built_triple()
    result = parameter_distance_transferability(init, source, finetuned, exclude=("fc.",))
    # stem: 0.5 / 0.5; block 0: mean(0.9, 0.7) / mean(0.1, 0.3) = 0.8 / 0.2;
    # block 1: mean(0.6, |+-0.2| = 0.2) / mean(0.4, mean(0.8, 1.2) = 1.0) = 0.4 / 0.7
    expected = {"conv1": 1.0, "layer1.0": 4.0, "layer1.1": 4.0 / 7.0}
    assert list(result["blocks"]) == list(expected)
    for block, value in expected.items():
        assert result["blocks"][block] == pytest.approx(value, rel=1e-12), block
    assert result["mean"] == pytest.approx(13.0 / 7.0, rel=1e-12)


def test_parameter_distance_transferability_edge_cases():
    init, source, finetuned = hand_built_triple()
    assert parameter_distance_transferability(init, source, source)["blocks"]["layer1.0"] == math.inf
    other = {**finetuned, "layer1.0.conv1.weight": torch.zeros(5, 2, 3, 3)}
    with pytest.raises(UserError, match="layer1.0.conv1.weight"):
        parameter_distance_transferability(init, source, other)
    without_stem = parameter_distance_transferability(init, source, finetuned, exclude=("conv1.",))
    assert list(without_stem["blocks"]) == ["layer1.0", "layer1.1"]


@pytest.mark.parametrize("arch, blocks", [
    ("resnet8", {"conv1": 1, "layer1.0": 2, "layer2.0": 2, "layer3.0": 2}),                   # downsample.0 out
    ("wrn_16_2", {"conv1": 1, **{f"block{b}.layer.{i}": 2 for b in (1, 2, 3) for i in (0, 1)}}),  # convShortcut out
])
def test_conv_blocks_of_registered_models(arch, blocks):
    state = create_model(arch, num_classes=10).state_dict()
    assert {block: len(keys) for block, keys in conv_blocks(state).items()} == blocks


def test_accuracy_top1_top5_by_hand():
    logits = torch.tensor([
        [0.9, 0.1, 0.0, 0.0, 0.0, 0.0],   # target 0: top-1 hit
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],   # target 1: rank 5 -> top-5 hit only
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],   # target 0: rank 6 -> miss
        [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],   # target 3: top-1 hit
    ])
    targets = torch.tensor([0, 1, 0, 3])
    top1, top5 = accuracy(logits, targets, topk=(1, 5))
    assert top1 == pytest.approx(50.0) and top5 == pytest.approx(75.0)
    assert accuracy(logits, targets) == [pytest.approx(50.0)]
    assert topk_correct(logits, targets, (1, 5, 10)).tolist() == [2.0, 3.0, 4.0]   # k > C counts every sample


def test_average_meter_weighs_batches_by_size():
    meter = AverageMeter()
    assert meter.avg == 0.0
    meter.update(50.0, n=2)
    meter.update(80.0, n=8)
    assert meter.val == 80.0 and meter.count == 10 and meter.avg == pytest.approx(74.0)
    meter.reset()
    assert meter.count == 0 and meter.avg == 0.0
