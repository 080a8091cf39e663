"""CRD's ShuffleNet V2 (`ShuffleV2` = net_size 1: widths 116/232/464, 1024-d head), 32x32 images.

Keys: `conv1`, `bn1`, `layer{1,2,3}.0` (down-sampling unit, `conv1..conv5`),
`layer*.<i>` (basic units, `conv1..conv3`), `conv2`, `bn2`, head `linear`.
forward_features -> [f0 (stem, 32x32), f1 (16x16), f2 (8x8), f3 (4x4), (B, 1024)];
with `preact` f1..f3 are the last units' outputs before their final ReLU.
"""
import torch
from torch import nn
import torch.nn.functional as F

from .base import ImageClassifier
from .layers import channel_shuffle, global_pool, register_family, stage_features

STAGE_WIDTHS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024),
                1.5: (176, 352, 704, 1024), 2.0: (224, 488, 976, 2048)}


def depthwise(channels, stride=1):
    return nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels, bias=False)


def pointwise(in_channels, out_channels):
    return nn.Conv2d(in_channels, out_channels, 1, bias=False)


class BasicUnit(nn.Module):
    """Split channels in half; transform the second half (1x1, dw 3x3, 1x1); concat, shuffle."""

    def __init__(self, channels, split_ratio=0.5):
        super().__init__()
        self.kept = int(channels * split_ratio)
        half = channels - self.kept
        self.conv1 = pointwise(half, half)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = depthwise(half)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = pointwise(half, half)
        self.bn3 = nn.BatchNorm2d(half)

    def forward(self, x):
        """(B, C, H, W) -> (shuffled output, unshuffled pre-ReLU concat), both (B, C, H, W)."""
        kept, transformed = x[:, :self.kept], x[:, self.kept:]
        out = F.relu(self.bn1(self.conv1(transformed)))
        out = self.bn2(self.conv2(out))
        preact = self.bn3(self.conv3(out))
        out = torch.cat([kept, F.relu(preact)], 1)
        return channel_shuffle(out, 2), torch.cat([kept, preact], 1)


class DownUnit(nn.Module):
    """Two strided branches (dw 3x3 + 1x1, and 1x1 + dw 3x3 + 1x1), concat, shuffle."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        mid = out_channels // 2
        self.conv1 = depthwise(in_channels, stride=2)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = pointwise(in_channels, mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = pointwise(in_channels, mid)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = depthwise(mid, stride=2)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = pointwise(mid, mid)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x):
        """(B, C_in, H, W) -> (B, C_out, H/2, W/2), twice (it has no pre-ReLU feature)."""
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        out = channel_shuffle(torch.cat([left, right], 1), 2)
        return out, out


class ShuffleNetV2(ImageClassifier):
    """1x1 stem to 24 channels, three stages (DownUnit + basic units), 1x1 conv, pool, `linear`."""

    head_attr = "linear"

    def __init__(self, net_size=1.0, num_blocks=(3, 7, 3), num_classes=100):
        super().__init__()
        widths = STAGE_WIDTHS[net_size]
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        in_channels = 24
        stages = []
        for channels, count in zip(widths[:3], num_blocks):
            stages.append(nn.Sequential(DownUnit(in_channels, channels),
                                        *[BasicUnit(channels) for _ in range(count)]))
            in_channels = channels
        self.layer1, self.layer2, self.layer3 = stages
        self.conv2 = pointwise(in_channels, widths[3])
        self.bn2 = nn.BatchNorm2d(widths[3])
        self.linear = nn.Linear(widths[3], num_classes)
        self.feat_dim = widths[3]

    def forward_features(self, x, preact=False):
        """(B, 3, H, W) -> [f0, f1, f2, f3, (B, feat_dim)]."""
        stem = F.relu(self.bn1(self.conv1(x)))
        feats, out = stage_features(stem, [self.layer1, self.layer2, self.layer3], preact)
        out = F.relu(self.bn2(self.conv2(out)))
        return [stem, *feats, global_pool(out)]


def shufflenet_v2(net_size, num_classes):
    return ShuffleNetV2(net_size, num_classes=num_classes)


register_family(shufflenet_v2, {"ShuffleV2": (1.0,)})
