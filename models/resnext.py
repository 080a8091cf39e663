"""CIFAR ResNeXt of depth 32 (widen factor 4, 32-channel stem, stage outputs 128/256/512).

The paper's backbone is `resnext32_16x4d`. Names are resnext<depth>_<cardinality>x<base
width>d. Each stage has (depth - 2) / 6 bottlenecks; a bottleneck of a stage with `C`
output channels has D = cardinality * int(base_width * C / 256) inner channels, split
into `cardinality` groups. Keys follow the original CifarResNeXt (`conv_1_3x3`, `bn_1`,
`stage_k.stage_k_bottleneck_i.{conv_reduce, conv_conv, conv_expand, shortcut...}`,
head `classifier`).
forward_features -> [f0 (stem, 32x32), f1 (32x32), f2 (16x16), f3 (8x8), (B, 512)];
the original has no pre-activation features, so `preact` is ignored.
"""
from torch import nn
import torch.nn.functional as F

from .base import ImageClassifier
from .layers import conv_bn_pair, global_pool, init_conv_bn, register_family


class ResNeXtBottleneck(nn.Module):
    """1x1 reduce to D, grouped 3x3 (strided), 1x1 expand; projection shortcut if widths differ."""

    def __init__(self, in_channels, out_channels, stride, cardinality, base_width, widen_factor):
        super().__init__()
        width_ratio = out_channels / (widen_factor * 64.0)
        inner = cardinality * int(base_width * width_ratio)
        self.conv_reduce, self.bn_reduce = conv_bn_pair(in_channels, inner, 1)
        self.conv_conv, self.bn = conv_bn_pair(inner, inner, 3, stride, groups=cardinality)
        self.conv_expand, self.bn_expand = conv_bn_pair(inner, out_channels, 1)
        self.shortcut = nn.Sequential()
        if in_channels != out_channels:
            conv, bn = conv_bn_pair(in_channels, out_channels, 1, stride)
            self.shortcut.add_module("shortcut_conv", conv)
            self.shortcut.add_module("shortcut_bn", bn)

    def forward(self, x):
        """(B, C_in, H, W) -> (B, C_out, H/stride, W/stride)."""
        out = F.relu(self.bn_reduce(self.conv_reduce(x)))
        out = F.relu(self.bn(self.conv_conv(out)))
        out = self.bn_expand(self.conv_expand(out))
        return F.relu(self.shortcut(x) + out)


class CifarResNeXt(ImageClassifier):
    """Stem conv 3x3 + three ResNeXt stages (strides 1, 2, 2) + global pool + `classifier`."""

    head_attr = "classifier"

    def __init__(self, cardinality, depth, base_width, widen_factor=4, num_classes=100, stem_width=32):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"ResNeXt depth must be 6n+2, got {depth}")
        self.blocks_per_stage = (depth - 2) // 6
        widths = [stem_width, 32 * widen_factor, 64 * widen_factor, 128 * widen_factor]
        self.conv_1_3x3, self.bn_1 = conv_bn_pair(3, stem_width, 3)
        block_args = (cardinality, base_width, widen_factor)
        self.stage_1 = self._stage("stage_1", widths[0], widths[1], 1, block_args)
        self.stage_2 = self._stage("stage_2", widths[1], widths[2], 2, block_args)
        self.stage_3 = self._stage("stage_3", widths[2], widths[3], 2, block_args)
        self.classifier = nn.Linear(widths[3], num_classes)
        self.feat_dim = widths[3]
        init_conv_bn(self)
        nn.init.kaiming_normal_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def _stage(self, name, in_channels, out_channels, stride, block_args):
        stage = nn.Sequential()
        for index in range(self.blocks_per_stage):
            stage.add_module(f"{name}_bottleneck_{index}", ResNeXtBottleneck(
                in_channels if index == 0 else out_channels, out_channels,
                stride if index == 0 else 1, *block_args))
        return stage

    def forward_features(self, x, preact=False):
        """(B, 3, H, W) -> [f0, f1, f2, f3, (B, feat_dim)]."""
        f0 = F.relu(self.bn_1(self.conv_1_3x3(x)))
        f1 = self.stage_1(f0)
        f2 = self.stage_2(f1)
        f3 = self.stage_3(f2)
        return [f0, f1, f2, f3, global_pool(f3)]


def resnext(depth, cardinality, base_width, num_classes):
    return CifarResNeXt(cardinality, depth, base_width, num_classes=num_classes)


register_family(resnext, {f"resnext32_{card}x{width}d": (32, card, width)
                          for card, width in [(4, 16), (8, 8), (16, 4), (32, 2)]})
