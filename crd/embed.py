"""Projection heads that map backbone features onto the unit sphere."""
import torch.nn as nn
import torch.nn.functional as F

from helper.core.errors import UserError


def l2_normalize(x, dim=1, eps=1e-12):
    """Scale each slice of `x` along `dim` to unit L2 norm (any shape, e.g. B x D)."""
    return F.normalize(x, p=2, dim=dim, eps=eps)


def check_positive(**values):
    """Raise `UserError` naming the first of `values` that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise UserError(f"`{name}` must be greater than 0, got {value!r}.")


def check_momentum(name, value):
    """Raise `UserError` unless the momentum `value` lies in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise UserError(f"`{name}` is a momentum and must lie in [0, 1], got {value!r}.")


class Embed(nn.Module):
    """Linear layer then row-wise L2 normalisation: (B, dim_in) -> (B, dim_out).

    Contrastive scores are cosine similarities, so every embedding that meets a
    memory bank must have unit norm.
    """

    def __init__(self, dim_in, dim_out=128):
        super().__init__()
        check_positive(dim_in=dim_in, dim_out=dim_out)
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        """x: (B, dim_in), flattened if it has extra dimensions -> (B, dim_out) unit rows."""
        return l2_normalize(self.linear(x.flatten(1)))
