"""CRD's ShuffleNet V1 for 32x32 images (`ShuffleV1`: groups 3, widths 240/480/960).

Keys: `conv1`, `bn1`, `layer{1,2,3}.<i>.{conv,bn}{1,2,3}`, head `linear`.
forward_features -> [f0 (stem, 32x32), f1 (16x16), f2 (8x8), f3 (4x4), (B, 960)];
with `preact` f1..f3 are the last blocks' outputs before their ReLU.
"""
import torch
from torch import nn
import torch.nn.functional as F

from .base import ImageClassifier
from .layers import channel_shuffle, global_pool, register_family, stage_features


class ShuffleUnit(nn.Module):
    """Grouped 1x1 -> shuffle -> depthwise 3x3 -> grouped 1x1, returns `(out, preact)`.

    Stride 2: the output is concatenated with a 3x3 average-pooled input, so the
    unit itself produces `out_planes` channels and the stage `out_planes + in_planes`.
    The very first unit (24 input channels) uses an ungrouped first conv.
    """

    def __init__(self, in_planes, out_planes, stride, groups):
        super().__init__()
        self.stride = stride
        mid_planes = out_planes // 4
        self.first_groups = 1 if in_planes == 24 else groups
        self.conv1 = nn.Conv2d(in_planes, mid_planes, 1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_planes)
        self.conv2 = nn.Conv2d(mid_planes, mid_planes, 3, stride=stride, padding=1,
                               groups=mid_planes, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_planes)
        self.conv3 = nn.Conv2d(mid_planes, out_planes, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)

    def forward(self, x):
        """(B, C_in, H, W) -> two (B, C_out, H/stride, W/stride): after and before the ReLU."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            preact = torch.cat([out, F.avg_pool2d(x, 3, stride=2, padding=1)], 1)
        else:
            preact = out + x
        return F.relu(preact), preact


class ShuffleNetV1(ImageClassifier):
    """1x1 stem to 24 channels, three stages (first unit strided), global pool, `linear`."""

    head_attr = "linear"

    def __init__(self, out_planes=(240, 480, 960), num_blocks=(4, 8, 4), groups=3, num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        in_planes = 24
        stages = []
        for planes, count in zip(out_planes, num_blocks):
            units = [ShuffleUnit(in_planes, planes - in_planes, 2, groups)]
            units += [ShuffleUnit(planes, planes, 1, groups) for _ in range(count - 1)]
            stages.append(nn.Sequential(*units))
            in_planes = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(in_planes, num_classes)
        self.feat_dim = in_planes

    def forward_features(self, x, preact=False):
        """(B, 3, H, W) -> [f0, f1, f2, f3, (B, feat_dim)]."""
        stem = F.relu(self.bn1(self.conv1(x)))
        feats, out = stage_features(stem, [self.layer1, self.layer2, self.layer3], preact)
        return [stem, *feats, global_pool(out)]


def shufflenet_v1(num_classes):
    return ShuffleNetV1(num_classes=num_classes)


register_family(shufflenet_v1, {"ShuffleV1": ()})
