"""Feature regression (DISTILLn of Zhang & Bottou, ICML 2023): a student learns to reproduce the concatenated
penultimate features of several teachers (CATn, helper/sweep/rrl.py), as distill_cat.py trains it."""
import torch.nn.functional as F
from torch import nn


class CatRegression(nn.Module):
    """The DISTILL target: a linear map of the student's penultimate features (B, d) onto the
    teachers' concatenated features (B, D), scored by the mean squared error per feature."""

    def __init__(self, student_dim, teacher_dim):
        super().__init__()
        self.regressor = nn.Linear(student_dim, teacher_dim)

    def forward(self, student_features, teacher_features):
        return F.mse_loss(self.regressor(student_features).float(), teacher_features.float())
