"""k-means in torch, on any device: greedy k-means++ and Lloyd iterations, all restarts at once.

It follows scikit-learn's `KMeans` (the reference, `--kmeans sklearn`): greedy k-means++
(2 + log k candidates per new centre, the one that lowers the potential most is kept),
Lloyd iterations until the squared centre shift falls under `tol` x the mean feature
variance (or `max_iter`), and the restart with the lowest inertia wins. The `n_init`
restarts are one batched computation: centres are (R, k, D), distances (R, N, k), so a
GPU does all restarts in the same kernels instead of ten sequential fits.

Deterministic for a seed on a given device: random draws come from one seeded generator,
and centres are updated by one-hot matrix products rather than scatter-adds (whose
atomic additions on CUDA change with thread timing). An empty cluster keeps its previous
centre (scikit-learn moves it to a far point instead; both are rare on real features).
"""
import math

import torch

# (R, N, k) distance or one-hot blocks of at most this many elements (256 MB in float32).
MAX_BLOCK_ELEMENTS = 1 << 26


def squared_distances(points, centers, point_norms):
    """||x - c||^2 for points (N, D) and centers (R, k, D) -> (R, N, k), clamped at 0."""
    center_norms = centers.pow(2).sum(-1)                                   # (R, k)
    cross = torch.matmul(points, centers.transpose(1, 2))                   # (R, N, k)
    return (point_norms[None, :, None] - 2 * cross + center_norms[:, None, :]).clamp_min_(0)


def kmeans_plusplus(points, point_norms, k, restarts, generator):
    """Greedy k-means++ centres (R, k, D) for `restarts` independent draws."""
    n, dim = points.shape
    trials = 2 + int(math.log(k))
    rows = torch.arange(restarts, device=points.device)
    centers = points.new_empty(restarts, k, dim)
    first = torch.randint(n, (restarts,), generator=generator, device=points.device)
    centers[:, 0] = points[first]
    closest = squared_distances(points, centers[:, :1], point_norms)[..., 0]   # (R, N)
    for c in range(1, k):
        potential = closest.sum(1, keepdim=True)                               # (R, 1)
        draws = torch.rand(restarts, trials, generator=generator, device=points.device) * potential
        candidates = torch.searchsorted(closest.cumsum(1), draws).clamp_(max=n - 1)   # (R, L)
        to_candidates = squared_distances(points, points[candidates], point_norms)   # (R, N, L)
        lowered = torch.minimum(closest[..., None], to_candidates)                   # (R, N, L)
        best = lowered.sum(1).argmin(1)                                              # (R,)
        centers[:, c] = points[candidates[rows, best]]
        closest = lowered[rows, :, best]
    return centers


def assign(points, point_norms, centers):
    """Nearest centre (R, N) int64 and its squared distance (R, N), in blocks of points."""
    restarts, k = centers.shape[:2]
    block = max(1, MAX_BLOCK_ELEMENTS // (restarts * k))
    labels, distances = [], []
    for start in range(0, len(points), block):
        d = squared_distances(points[start:start + block], centers, point_norms[start:start + block])
        nearest = d.min(-1)
        labels.append(nearest.indices)
        distances.append(nearest.values)
    return torch.cat(labels, 1), torch.cat(distances, 1)


def cluster_means(points, labels, previous):
    """Mean point of each cluster (R, k, D); an empty cluster keeps its `previous` centre."""
    restarts, k = previous.shape[:2]
    block = max(1, MAX_BLOCK_ELEMENTS // (restarts * k))
    sums = torch.zeros_like(previous)
    counts = previous.new_zeros(restarts, k)
    for start in range(0, len(points), block):
        one_hot = torch.nn.functional.one_hot(labels[:, start:start + block], k).to(points.dtype)   # (R, b, k)
        sums += one_hot.transpose(1, 2) @ points[start:start + block]
        counts += one_hot.sum(1)
    means = sums / counts.clamp_min(1)[..., None]
    return torch.where(counts[..., None] > 0, means, previous)


def kmeans_restarts(features, k, n_init=10, seed=0, max_iter=300, tol=1e-4):
    """All `n_init` restarts of k-means on features (N, D): (labels (R, N) int64, inertia (R,)).

    Runs on the features' device in their float dtype. Each restart iterates until its squared
    centre shift is at most tol x mean per-feature variance (scikit-learn's criterion) or its
    labels stop changing, for at most `max_iter` steps; converged restarts leave the batch, so
    the slowest one does not make the others iterate. Inertia is the sum of squared distances
    to the nearest centre.
    """
    if not 1 <= k <= len(features):
        raise ValueError(f"k-means needs 1 <= k <= N (got k={k}, N={len(features)})")
    # centred, as scikit-learn does: the same distances, less cancellation in float32
    points = features - features.mean(0, keepdim=True)
    point_norms = points.pow(2).sum(1)
    threshold = tol * points.var(0, unbiased=False).mean()
    generator = torch.Generator(device=points.device).manual_seed(seed)
    centers = kmeans_plusplus(points, point_norms, k, n_init, generator)
    labels, _ = assign(points, point_norms, centers)
    active = torch.arange(n_init, device=points.device)        # restarts still iterating
    for _ in range(max_iter):
        new_centers = cluster_means(points, labels[active], centers[active])
        shift = (new_centers - centers[active]).pow(2).sum((1, 2))             # (A,)
        new_labels, _ = assign(points, point_norms, new_centers)
        converged = (shift <= threshold) | (new_labels == labels[active]).all(1)
        centers[active], labels[active] = new_centers, new_labels
        active = active[~converged]                                            # one host sync per step
        if len(active) == 0:
            break
    labels, distances = assign(points, point_norms, centers)
    return labels, distances.sum(1)


def kmeans(features, k, n_init=10, seed=0, max_iter=300, tol=1e-4):
    """k-means of features (N, D): (labels (N,) int64, inertia float) of the lowest-inertia restart
    (the first one on a tie); see `kmeans_restarts`."""
    labels, inertia = kmeans_restarts(features, k, n_init, seed, max_iter, tol)
    best = int(inertia.argmin())
    return labels[best], float(inertia[best])
