"""Classification and discriminability metrics, and a parameter-distance transferability score.

- `recall_at_1`: leave-one-out nearest-neighbour retrieval (cosine), in percent, on the features' device;
- `nmi_kmeans`: k-means clustering quality against the labels (NMI in [0, 1]), by the torch
  k-means of `helper.sweep.kmeans` on the features' device or by scikit-learn's KMeans (the reference);
- `parameter_distance_transferability`: per-block ratio of distances between the
  random init, the source-trained and the fine-tuned weights, from "Rethinking Two
  Consensuses of Transferability of Pre-trained DNNs" (docs/param_transferability.md).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from helper.core.errors import UserError
from helper.sweep.kmeans import kmeans

KMEANS_BACKENDS = ("torch", "sklearn")


def _features_and_labels(features, labels, min_samples):
    """Validate and convert to (float32 (N, D) tensor, int64 (N,) tensor)."""
    features = torch.as_tensor(features, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.long).to(features.device)
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise UserError(f"Metrics need features (N, D) and labels (N,) with the same N "
                        f"(got {tuple(features.shape)} and {tuple(labels.shape)}).")
    if len(features) < min_samples:
        raise UserError(f"This metric needs at least {min_samples} samples (got {len(features)}).")
    return features, labels


def recall_at_1(features, labels, block_size=1024):
    """Percent of samples whose nearest other sample (cosine similarity) shares their label.

    features (N, D), labels (N,), on any device (computed there). The similarity matrix is
    built `block_size` rows at a time, so memory is O(block_size * N); a sample's similarity
    to itself is -inf. Hits are summed on the device: one host sync in all.
    """
    features, labels = _features_and_labels(features, labels, min_samples=2)
    normalized = F.normalize(features, dim=1)
    hits = torch.zeros((), dtype=torch.long, device=normalized.device)
    for start in range(0, len(normalized), block_size):
        rows = torch.arange(start, min(start + block_size, len(normalized)), device=normalized.device)
        similarity = normalized[rows] @ normalized.T                          # (b, N)
        similarity[torch.arange(len(rows), device=rows.device), rows] = -math.inf
        nearest = similarity.argmax(dim=1)                                     # (b,) the top-1
        hits += (labels[nearest] == labels[rows]).sum()
    return 100.0 * hits.item() / len(normalized)


def nmi_kmeans(features, labels, num_classes=None, n_init=10, seed=0, backend="torch"):
    """NMI in [0, 1] between k-means clusters of the L2-normalised features and the labels.

    features (N, D), labels (N,); k = num_classes, or the number of distinct labels.
    backend 'torch': `helper.sweep.kmeans.kmeans` on the features' device; 'sklearn': scikit-learn's
    KMeans on the CPU (the reference; the same algorithm, NMI within 0.01 of each other).
    """
    if backend not in KMEANS_BACKENDS:
        raise UserError(f"The k-means backend must be one of {', '.join(KMEANS_BACKENDS)} (got {backend!r}).")
    features, labels = _features_and_labels(features, labels, min_samples=1)
    labels_np = labels.cpu().numpy()
    k = num_classes if num_classes is not None else len(np.unique(labels_np))
    if not 1 <= k <= len(labels_np):
        raise UserError(f"KMeans needs between 1 and N={len(labels_np)} clusters (got k={k}).")
    normalized = F.normalize(features, dim=1)
    if backend == "torch":
        clusters = kmeans(normalized, k, n_init=n_init, seed=seed)[0].cpu().numpy()
    else:
        clusters = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit_predict(normalized.cpu().numpy())
    return float(normalized_mutual_info_score(labels_np, clusters))


def conv_blocks(state, exclude=()):
    """{block: [conv weight keys]} in state-dict order, the units of `parameter_distance_transferability`.

    Convolutions are the 4-D '.weight' entries. Each is grouped under the module that
    holds it: a residual block ('layer1.0.conv2.weight' -> 'layer1.0'), or, for a
    convolution directly on the model such as the stem ('conv1.weight'), its own
    entry. Shortcut convolutions (a path component 'downsample' or containing
    'shortcut') and keys under an `exclude` prefix (the classifier) are left out.
    """
    blocks = {}
    for key, value in state.items():
        if not key.endswith(".weight") or value.ndim != 4 or key.startswith(tuple(exclude)):
            continue
        path = key.split(".")[:-1]
        if any(part == "downsample" or "shortcut" in part.lower() for part in path):
            continue
        blocks.setdefault(".".join(path[:-1]) or path[0], []).append(key)
    return blocks


def parameter_distance_transferability(init_state, source_state, finetuned_state, exclude=()):
    """Per-block T = D(theta_r, theta_FB) / D(theta_A, theta_FB) and its mean over blocks.

    The definition of "Rethinking Two Consensuses of Transferability of Pre-trained
    DNNs" (its cal_transferability.py): theta_r is the random init, theta_A the
    source-trained and theta_FB the fine-tuned weights; D of one convolution is the
    mean absolute element difference, D of a block the mean of its convolutions' D
    (numerator and denominator averaged separately, then divided). Blocks are those of
    `conv_blocks` (shortcut convolutions and the classifier left out; the stem counts
    as one entry, as in the reference's mean). A larger T means fine-tuning stayed
    closer to the source weights than to the random init: the block transferred
    better. A zero denominator gives T = inf for that block (and the mean). Computed
    in float64. Returns {'blocks': {block: T}, 'mean': float}.
    """
    exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    blocks = conv_blocks(finetuned_state, exclude)
    if not blocks:
        raise UserError("No convolutions left to compare: the fine-tuned state dict has no 4-D '.weight' "
                        "entries outside the shortcuts and the excluded prefixes.")
    scores = {}
    for block, keys in blocks.items():
        to_init, to_source = [], []
        for key in keys:
            tensors = [state.get(key) for state in (init_state, source_state, finetuned_state)]
            if any(t is None or t.shape != tensors[2].shape for t in tensors):
                raise UserError(f"Convolution '{key}' is missing or has a different shape in one of the three "
                                "state dicts (init, source, fine-tuned): they must be the same architecture.")
            theta_r, theta_a, theta_fb = (t.detach().double().cpu() for t in tensors)
            to_init.append((theta_r - theta_fb).abs().mean().item())
            to_source.append((theta_a - theta_fb).abs().mean().item())
        numerator, denominator = float(np.mean(to_init)), float(np.mean(to_source))
        scores[block] = numerator / denominator if denominator > 0 else math.inf
    return {"blocks": scores, "mean": float(np.mean(list(scores.values())))}
