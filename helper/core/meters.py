"""Top-k hits and a running mean: the classification meters that training and the probe share."""
import torch


def topk_correct(logits, targets, topk=(1,)):
    """Hits per k as a float64 tensor (len(topk),) on the logits' device: no host sync.

    logits (B, C), targets (B,). k larger than C counts every sample, as a full ranking would.
    """
    max_k = min(max(topk), logits.shape[1])
    hits = logits.topk(max_k, dim=1).indices.eq(targets.reshape(-1, 1))      # (B, max_k)
    return torch.stack([hits[:, :min(k, max_k)].any(dim=1).sum() for k in topk]).double()


def accuracy(logits, targets, topk=(1,)):
    """Top-k accuracies in percent, logits (B, C), targets (B,) -> [float per k]."""
    return (topk_correct(logits, targets, topk) * (100.0 / max(targets.numel(), 1))).tolist()


class AverageMeter:
    """Running mean of a scalar over samples: `update(value, n)` weighs a batch mean by its size.

    For host-side numbers (per-batch accuracies, timings); the training loop keeps its
    sums on the device instead (`helper.train.loops.EpochMeter`) to avoid a sync per step.
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self.val, self.sum, self.count = 0.0, 0.0, 0

    def update(self, value, n=1):
        self.val = float(value)
        self.sum += self.val * n
        self.count += n

    @property
    def avg(self):
        return self.sum / self.count if self.count else 0.0
