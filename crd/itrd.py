"""Information Theoretic Representation Distillation (Miles et al., BMVC 2022) and Hinton KD."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from crd.embed import check_positive, l2_normalize
from helper.core.errors import UserError

STD_EPS = 1e-6


def _standardise(x):
    """Zero mean, unit (unbiased) std per column over the batch: (B, D) -> (B, D)."""
    return (x - x.mean(0)) / (x.std(0) + STD_EPS)


def itrd_correlation_loss(z_s, f_t, alpha=1.01):
    """log2(sum_x |c_x - 1|^(2 alpha)), c_x the batch correlation of dimension x.

    z_s: (B, D) student feature already embedded to the teacher's width; f_t: (B, D).
    The std is unbiased while c_x averages over B, so identical features give
    c_x = (B-1)/B and a finite minimum instead of log2(0).
    """
    if z_s.shape != f_t.shape:
        raise UserError(f"ITRD needs student and teacher features of one shape, got {tuple(z_s.shape)} "
                        f"and {tuple(f_t.shape)}.")
    if z_s.shape[0] < 2:
        raise UserError("ITRD's correlation loss standardises over the batch and needs a batch of at least 2.")
    corr = (_standardise(z_s) * _standardise(f_t)).mean(0)  # (D,)
    return torch.log2((corr - 1.0).abs().pow(2.0 * alpha).sum())


def itrd_mutual_loss(z_s, f_t):
    """sum(G_s^2 - G_st^2) with trace-normalised Gram matrices; >= 0. z_s, f_t: (B, D) -> scalar.

    G_s = z z^T, G_t = f f^T on unit rows, G_st = G_s * G_t (elementwise).
    """
    z_s, f_t = l2_normalize(z_s), l2_normalize(f_t)
    gram_s = z_s @ z_s.t()
    gram_st = gram_s * (f_t @ f_t.t())
    gram_s = gram_s / torch.trace(gram_s)
    gram_st = gram_st / torch.trace(gram_st)
    return (gram_s.pow(2) - gram_st.pow(2)).sum()


class ITRDLoss(nn.Module):
    """lambda_corr * correlation + lambda_mutual * mutual loss.

    As in ITRD's code, the correlation loss always compares the linearly embedded
    student feature, while the mutual loss embeds it only when the widths differ
    (equal widths compare the raw feature, so its Gram matrix is the network's own).
    f_s: (B, feat_dim_s), f_t: (B, feat_dim_t). f_t is detached: the teacher is a target.
    """

    def __init__(self, feat_dim_s, feat_dim_t, lambda_corr=2.0, lambda_mutual=1.0, alpha=1.01):
        super().__init__()
        check_positive(feat_dim_s=feat_dim_s, feat_dim_t=feat_dim_t)
        self.embed = nn.Linear(feat_dim_s, feat_dim_t)
        self.embed_mutual = feat_dim_s != feat_dim_t
        self.lambda_corr, self.lambda_mutual, self.alpha = lambda_corr, lambda_mutual, alpha

    def forward(self, f_s, f_t):
        """Scalar weighted ITRD loss."""
        f_s, f_t = f_s.flatten(1), f_t.flatten(1).detach()
        z_s = self.embed(f_s)
        return (self.lambda_corr * itrd_correlation_loss(z_s, f_t, self.alpha)
                + self.lambda_mutual * itrd_mutual_loss(z_s if self.embed_mutual else f_s, f_t))


def kd_loss(logits_s, logits_t, T=4.0):
    """Hinton KD: KL(softmax(t/T) || softmax(s/T)) * T^2, batch mean. logits: (B, C) -> scalar."""
    log_p_s = F.log_softmax(logits_s / T, dim=1)
    p_t = F.softmax(logits_t / T, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * T * T
