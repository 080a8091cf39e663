"""Contrastive losses: CRD's NCE loss (CTC stage 2) and instance discrimination (CTC stage 1)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from crd.embed import Embed, check_momentum, check_positive, l2_normalize
from crd.memory import ContrastMemory, momentum_write, random_unit_rows

NCE_EPS = 1e-7


def _gathered(gather_fn, *tensors):
    """Apply the all-gather hook to each tensor, or return them unchanged when it is None."""
    if gather_fn is None:
        return tensors
    return tuple(gather_fn(t) for t in tensors)


def nce_loss(x, n_data):
    """CRD's NCE loss on scores x: (B, K+1), column 0 the positive; noise probability 1/n_data.

    loss = -(sum_i log(x_i0 / (x_i0 + K/n + eps)) + sum_{i, j>=1} log((K/n) / (x_ij + K/n + eps))) / B
    """
    batch, k = x.shape[0], x.shape[1] - 1
    k_pn = k / float(n_data)
    log_pos = torch.log(x[:, 0] / (x[:, 0] + k_pn + NCE_EPS))
    log_neg = torch.log(k_pn / (x[:, 1:] + k_pn + NCE_EPS))
    return -(log_pos.sum() + log_neg.sum()) / batch


class CRDLoss(nn.Module):
    """Contrastive representation distillation between a student and a frozen snapshot.

    f_s: (B, feat_dim_s) current features, f_t: (B, feat_dim_t) frozen features,
    idx: (B,) dataset indices of the samples.
    """

    def __init__(self, feat_dim_s, feat_dim_t, n_data, feat_dim=128, nce_k=16384, nce_t=0.07, nce_m=0.5):
        super().__init__()
        self.n_data = n_data
        self.embed_s = Embed(feat_dim_s, feat_dim)
        self.embed_t = Embed(feat_dim_t, feat_dim)
        self.memory = ContrastMemory(feat_dim, n_data, nce_k, nce_t, nce_m)

    def forward(self, f_s, f_t, idx, contrast_idx=None, gather_fn=None, reduce_fn=None):
        """Scalar loss nce(out_v1) + nce(out_v2); then a momentum update of both banks.

        contrast_idx: (B, K+1) or None (then K uniform negatives are drawn).
        gather_fn: all-gather hook applied to v1, v2, idx before the bank update.
        reduce_fn: hook on the batch mean that fixes Z (see ContrastMemory.scores).
        """
        v1, v2 = self.embed_s(f_s), self.embed_t(f_t)
        if contrast_idx is None:
            contrast_idx = self.memory.sample_indices(idx)
        out_v1, out_v2 = self.memory.scores(v1, v2, contrast_idx, reduce_fn)
        loss = nce_loss(out_v1, self.n_data) + nce_loss(out_v2, self.n_data)
        self.memory.update(*_gathered(gather_fn, v1.detach(), v2.detach(), idx))
        return loss

    @torch.no_grad()
    def refresh_memory(self, f_s, f_t, idx, gather_fn=None):
        """Embed a batch without gradient and overwrite its bank rows (start of CTC stage 2)."""
        v1, v2 = self.embed_s(f_s), self.embed_t(f_t)
        self.memory.refresh(*_gathered(gather_fn, v1, v2, idx))


class InstanceDiscrimination(nn.Module):
    """Non-parametric instance discrimination over a bank of n_data unit vectors (CTC stage 1).

    Every training image is its own class; the class weights are the bank rows.
    """

    def __init__(self, feat_dim, n_data, dim=128, instance_t=0.1, instance_m=0.5):
        super().__init__()
        check_positive(feat_dim=feat_dim, n_data=n_data, dim=dim, instance_t=instance_t)
        check_momentum("instance_m", instance_m)
        self.instance_t, self.instance_m = instance_t, instance_m
        self.projector = nn.Linear(feat_dim, dim)
        self.register_buffer("bank", random_unit_rows(n_data, dim))

    def forward(self, feat, idx, gather_fn=None):
        """feat: (B, feat_dim), idx: (B,) long -> scalar cross-entropy; then updates bank[idx].

        The logits use a copy of the bank: the in-place update that follows would
        otherwise invalidate the tensor autograd saved for the backward pass.
        """
        v = l2_normalize(self.projector(feat.flatten(1)))
        logits = v @ self.bank.clone().t() / self.instance_t  # (B, n_data)
        loss = F.cross_entropy(logits, idx.to(logits.device))
        rows, values = _gathered(gather_fn, idx, v.detach())
        momentum_write(self.bank, rows, values, self.instance_m)
        return loss
