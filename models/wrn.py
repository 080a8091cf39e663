"""Wide ResNets WRN-depth-k of CRD (pre-activation blocks, widths 16k/32k/64k).

Keys follow the original: `conv1`, `block{1,2,3}.layer.<i>`, final `bn1`, head `fc`.
forward_features -> [f0 (stem conv), f1, f2, f3 (stage outputs), (B, 64k)]; with
`preact` f1..f3 are the BN outputs that the next stage would apply ReLU to.
"""
from torch import nn
import torch.nn.functional as F

from .base import ImageClassifier
from .layers import batch_norm_no_update, global_pool, init_conv_bn, register_family


class WideBasic(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 plus shortcut.

    When the width changes, the shortcut is a 1x1 conv (`convShortcut`) applied to
    the activated input, as in the original.
    """

    def __init__(self, in_planes, out_planes, stride, drop_rate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(
            in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x):
        """(B, C_in, H, W) -> (B, C_out, H/stride, W/stride)."""
        activated = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(activated)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        shortcut = x if self.equal_in_out else self.convShortcut(activated)
        return out + shortcut


class NetworkBlock(nn.Module):
    """One stage: `layer` = `num_layers` WideBasic blocks, the first one strided."""

    def __init__(self, num_layers, in_planes, out_planes, stride, drop_rate=0.0):
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBasic(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate)
            for i in range(num_layers)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(ImageClassifier):
    """WRN-depth-widen: (depth - 4) / 6 blocks per stage, final BN-ReLU, pool, `fc`."""

    head_attr = "fc"

    def __init__(self, depth, widen_factor, num_classes=100, drop_rate=0.0):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        blocks_per_stage = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.block1 = NetworkBlock(blocks_per_stage, widths[0], widths[1], 1, drop_rate)
        self.block2 = NetworkBlock(blocks_per_stage, widths[1], widths[2], 2, drop_rate)
        self.block3 = NetworkBlock(blocks_per_stage, widths[2], widths[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        self.feat_dim = widths[3]
        init_conv_bn(self)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x, preact=False):
        """(B, 3, H, W) -> [f0, f1, f2, f3, (B, feat_dim)]."""
        f0 = self.conv1(x)
        f1 = self.block1(f0)
        f2 = self.block2(f1)
        f3 = self.block3(f2)
        pooled = global_pool(F.relu(self.bn1(f3)))
        if preact:
            # The BN that each feature meets next (statistics are not moved again).
            bns = (self.block2.layer[0].bn1, self.block3.layer[0].bn1, self.bn1)
            f1, f2, f3 = (batch_norm_no_update(bn, f) for bn, f in zip(bns, (f1, f2, f3)))
        return [f0, f1, f2, f3, pooled]


def wide_resnet(depth, widen_factor, num_classes):
    return WideResNet(depth, widen_factor, num_classes)


WRN_CONFIGS = [(16, 1), (16, 2), (16, 4), (16, 10), (22, 4), (28, 2), (28, 4), (28, 10),
               (34, 4), (40, 1), (40, 2), (40, 4), (46, 4), (52, 4), (64, 4)]
register_family(wide_resnet, {f"wrn_{depth}_{widen}": (depth, widen) for depth, widen in WRN_CONFIGS})
