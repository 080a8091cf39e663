"""Classification and discriminability metrics, and a parameter-distance transferability score.

- `recall_at_1`: leave-one-out nearest-neighbour retrieval (cosine), in percent, on the features' device;
- `nmi_kmeans`: k-means clustering quality against the labels (NMI in [0, 1]), by the torch
  k-means of `helper.sweep.kmeans` on the features' device or by scikit-learn's KMeans (the reference);
- `nc1`, `effective_rank`, `coding_rate`: how compressed the features are, computed exactly (float64,
  on the CPU) without a neural estimator: within-class variability collapse, the spread of the singular
  values, and the rate-distortion "entropy" of the normalised features;
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
# epsilon^2 of the coding rate: the distortion a feature may be coded with, on unit-norm features. 0.5 is the
# value Yu et al. (2020) use for all their experiments; it is fixed so that rates compare across checkpoints
# and runs (a rate depends on epsilon, so only rates with the same epsilon and feature width compare).
CODING_RATE_EPS2 = 0.5


def _features_and_labels(features, labels, min_samples, dtype=torch.float32):
    """Validate and convert to (`dtype` (N, D) tensor, int64 (N,) tensor)."""
    features = torch.as_tensor(features, dtype=dtype)
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


def _float64_cpu(features):
    """features (N, D) as a float64 CPU tensor (the pseudo-inverse and log det need the precision)."""
    features = torch.as_tensor(features)
    if features.ndim != 2 or len(features) < 2:
        raise UserError(f"This measure needs features (N, D) with N >= 2 (got {tuple(features.shape)}).")
    return features.detach().to("cpu", torch.float64)


def nc1(features, labels):
    """Within-class variability collapse NC1 = tr(Sigma_W Sigma_B^+) / C (Papyan, Han & Donoho 2020).

    features (N, D), labels (N,) of C >= 2 classes. Sigma_W is the covariance of the features around
    their class means (averaged over all samples), Sigma_B the covariance of the class means around the
    global mean (averaged over classes), ^+ the pseudo-inverse. 0 when every class has collapsed to its
    mean; variation orthogonal to the span of the class means does not count. Scale-invariant.
    """
    h = _float64_cpu(features)                                                     # (N, D)
    _, labels = _features_and_labels(h, labels, min_samples=2, dtype=torch.float64)
    classes, index = torch.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise UserError(f"NC1 needs samples of at least 2 classes (got {len(classes)}).")
    counts = torch.bincount(index).to(h.dtype)
    means = torch.zeros(len(classes), h.shape[1], dtype=h.dtype).index_add_(0, index, h) / counts[:, None]  # (C, D)
    within = h - means[index]                                                      # (N, D)
    between = means - h.mean(dim=0)                                                # (C, D)
    sigma_w = within.T @ within / len(h)                                           # (D, D)
    sigma_b = between.T @ between / len(classes)                                   # (D, D), rank <= C - 1
    return float((sigma_w * torch.linalg.pinv(sigma_b, hermitian=True)).sum() / len(classes))


def effective_rank(features):
    """exp of the entropy of the normalised singular values of the feature matrix (Roy & Vetterli 2007).

    features (N, D), used as they are (not centred). Between 1 and min(N, D) (0 for all-zero features):
    close to D for isotropic features, at most r for features of rank r (singular values below the
    numerical-rank tolerance of `torch.linalg.matrix_rank` at the features' own precision, max(N, D) *
    eps * the largest, count as 0: float32 features are exact only to float32's eps). Scale-invariant.
    """
    features = torch.as_tensor(features)
    eps = torch.finfo(features.dtype if features.is_floating_point() else torch.float64).eps
    h = _float64_cpu(features)
    singular = torch.linalg.svdvals(h)                                             # (min(N, D),)
    singular = singular[singular > max(h.shape) * eps * singular.max()]
    if len(singular) == 0:          # all-zero features: rank 0
        return 0.0
    p = singular / singular.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def coding_rate(features, eps2=CODING_RATE_EPS2):
    """R(Z, eps) = 1/2 log det(I + D / (N eps^2) Z^T Z) in nats, Z the features normalised to unit rows.

    The rate-distortion estimate of MCR^2 (Yu et al. 2020): the nats needed to code the N features of
    width D up to a distortion eps (eps^2 = `eps2`, default CODING_RATE_EPS2). Larger when the features
    spread over more directions: 1/2 log(1 + D / eps^2) when every feature points the same way, at most
    D/2 log(1 + 1 / eps^2), reached when Z^T Z = N/D I.
    """
    z = F.normalize(_float64_cpu(features), dim=1)                                 # (N, D)
    n, d = z.shape
    gram = torch.eye(d, dtype=z.dtype) + (d / (n * eps2)) * (z.T @ z)             # (D, D), positive definite
    return float(0.5 * torch.linalg.slogdet(gram).logabsdet)


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
