"""One checkpoint's discriminability metrics (Recall@1 + NMI) at the paper's size, on synthetic features.

10,000 x 512 features of 100 classes (class-clustered Gaussians, the shape of ResNeXt features of the
CIFAR-100 test set): Recall@1 and scikit-learn KMeans on the CPU (original) against Recall@1 and the
torch k-means on the device, both at --kmeans_n_init restarts. A second row adds the compression measures
(NC1, effective rank, coding rate; float64 on the CPU) to the device's Recall@1 + NMI: its ratio is the
share of a checkpoint's discriminability time that is not the measures (above 0.95: they cost under 5 %).
"""
import torch

from benchmarks.common import ratio_row, timed
from helper.sweep.metrics import coding_rate, effective_rank, nc1, nmi_kmeans, recall_at_1


def clustered_features(rows, dim, classes, seed=0):
    """(features (rows, dim) float32, labels (rows,)): unit-norm noise around random class means of norm ~0.25,
    so k-means has to work: at 10,000 x 512, k 100, NMI ~0.94 (at 0.8x that separation the classes
    blur and NMI drops to ~0.2)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (rows,), generator=generator)
    means = torch.randn(classes, dim, generator=generator) * (0.25 / dim ** 0.5)
    return means[labels] + torch.randn(rows, dim, generator=generator) / dim ** 0.5, labels


def table_row(args, device):
    """bench.py's discriminability rows: seconds per checkpoint, scikit-learn on the CPU against torch on `device`;
    then torch on `device` without and with the three compression measures."""
    rows, dim, classes = (1000, 64, 10) if args.quick else (args.disc_rows, args.disc_dim, args.disc_classes)
    features, labels = clustered_features(rows, dim, classes)

    def nmi_and_seconds(backend, where):
        def metrics():
            on = features.to(where), labels.to(where)
            recall_at_1(*on)
            return nmi_kmeans(*on, num_classes=classes, n_init=args.kmeans_n_init, seed=0, backend=backend)
        return timed(where, metrics)

    reference_nmi, reference = nmi_and_seconds("sklearn", torch.device("cpu"))
    ours_nmi, ours = nmi_and_seconds("torch", device)
    config = {"rows": rows, "dim": dim, "classes": classes, "n_init": args.kmeans_n_init}
    _, measures = timed(device, lambda: (nc1(features, labels), effective_rank(features), coding_rate(features)))
    return [ratio_row(f"discriminability {rows}x{dim} k{classes} n_init {args.kmeans_n_init}", "s/ckpt",
                      reference, ours, {**config, "nmi_sklearn": reference_nmi, "nmi_torch": ours_nmi},
                      ratio=reference / ours),
            ratio_row(f"  + NC1, effective rank, coding rate ({measures:.3f} s)", "s/ckpt", ours, ours + measures,
                      {**config, "measures_seconds": measures}, ratio=ours / (ours + measures))]
