"""The one feature/head interface every model of the zoo implements.

Callers (transfer, MINE, retrieval, CTC, distillation) use only this interface:
`feat_dim`, `head`, `reset_head`, `forward_features` and `forward(x, is_feat)`.
Nobody outside `models/` looks up a head by its attribute name.
"""
import torch
from torch import nn


class ImageClassifier(nn.Module):
    """Base class: a backbone that ends in a pooled vector, followed by one linear head.

    Subclasses keep the attribute names of the original CRD / dt-tradeoff code so
    their state_dict keys match it exactly, and declare where the head lives:

    - `head_attr`: the attribute path of the final `nn.Linear`, e.g. "fc",
      "linear", "classifier" or "classifier.0";
    - `feat_dim`: the size of the pooled penultimate vector (set in `__init__`);
    - `forward_features(x, preact)`: the list of stage features, the last being
      the pooled penultimate vector of shape (B, feat_dim).
    """

    head_attr = "fc"
    feat_dim: int

    @property
    def head(self) -> nn.Linear:
        """The classification layer, (B, feat_dim) -> (B, num_classes)."""
        module = self
        for part in self.head_attr.split("."):
            module = module[int(part)] if part.isdigit() else getattr(module, part)
        return module

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def reset_head(self, num_classes: int) -> nn.Linear:
        """Replace the head by a freshly initialised `nn.Linear(feat_dim, num_classes)`."""
        old = self.head
        new = nn.Linear(self.feat_dim, num_classes).to(device=old.weight.device, dtype=old.weight.dtype)
        *parents, last = self.head_attr.split(".")
        parent = self
        for part in parents:
            parent = parent[int(part)] if part.isdigit() else getattr(parent, part)
        if last.isdigit():
            parent[int(last)] = new
        else:
            setattr(parent, last, new)
        return new

    def forward_features(self, x: torch.Tensor, preact: bool = False) -> list:
        """Stage features [f0, ..., pooled]; pooled is (B, feat_dim)."""
        raise NotImplementedError

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled penultimate vector, (B, 3, H, W) -> (B, feat_dim)."""
        return self.forward_features(x)[-1]

    def forward(self, x: torch.Tensor, is_feat: bool = False, preact: bool = False):
        """Logits (B, num_classes), or `(features, logits)` when `is_feat`."""
        feats = self.forward_features(x, preact=preact)
        logits = self.head(feats[-1])
        return (feats, logits) if is_feat else logits
