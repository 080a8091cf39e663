"""Discriminability metrics, parameter-distance transferability and top-k accuracy."""
import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score
from torch import nn

from helper.errors import UserError
from helper.metrics import (AverageMeter, accuracy, nmi_kmeans, parameter_distance_transferability, recall_at_1,
                            topk_correct)


def brute_force_recall_at_1(features, labels):
    """Reference: full cosine-similarity matrix in numpy, diagonal excluded."""
    normalized = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = normalized @ normalized.T
    np.fill_diagonal(similarity, -np.inf)
    return 100.0 * np.mean(labels[similarity.argmax(axis=1)] == labels)


def test_recall_at_1_matches_brute_force_across_blocks():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 6)).astype(np.float32)
    labels = rng.integers(0, 3, size=50)
    expected = brute_force_recall_at_1(features.astype(np.float64), labels)
    assert 0.0 < expected < 100.0
    for block_size in (7, 1024):
        assert recall_at_1(torch.from_numpy(features), torch.from_numpy(labels),
                           block_size=block_size) == pytest.approx(expected)


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


def two_layer_state(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).state_dict()


def test_parameter_distance_transferability_by_hand():
    init, source, finetuned = two_layer_state(0), two_layer_state(1), two_layer_state(2)
    result = parameter_distance_transferability(init, source, finetuned)
    expected = {}
    for key in ("0.weight", "2.weight"):
        numerator = math.sqrt(((init[key] - finetuned[key]) ** 2).sum().item())
        denominator = math.sqrt(((source[key] - finetuned[key]) ** 2).sum().item())
        expected[key] = numerator / denominator
    assert set(result["layers"]) == {"0.weight", "2.weight"}, "biases are not layers"
    for key, value in expected.items():
        assert result["layers"][key] == pytest.approx(value, rel=1e-6)
    assert result["mean"] == pytest.approx(np.mean(list(expected.values())), rel=1e-6)

    without_head = parameter_distance_transferability(init, source, finetuned, exclude=("2.",))
    assert list(without_head["layers"]) == ["0.weight"]
    assert without_head["mean"] == pytest.approx(expected["0.weight"], rel=1e-6)


def test_parameter_distance_transferability_edge_cases():
    init, source = two_layer_state(0), two_layer_state(1)
    assert parameter_distance_transferability(init, source, source)["layers"]["0.weight"] == math.inf
    other_head = {**source, "2.weight": torch.zeros(5, 4)}
    with pytest.raises(UserError):
        parameter_distance_transferability(init, source, other_head)
    assert "2.weight" not in parameter_distance_transferability(
        init, source, other_head, exclude=["2."])["layers"]


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
