"""ImageNet-style ResNets (18/34/50/101/152) adapted to CIFAR, as in CRD's `resnetv2.py`.

Differences from torchvision: a 3x3 stride-1 stem without max-pool (32x32 inputs),
shortcuts stored as `shortcut`, head named `linear`. Stages run at 32/16/8/4 pixels.
forward_features -> [f0 (stem), f1..f4 (stage outputs, pre-ReLU if `preact`), (B, feat_dim)].
"""
from torch import nn
import torch.nn.functional as F

from .layers import register_family
from .resnet import BasicBlock, ResidualBlock, ResNet


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, each followed by BN."""

    expansion = 4

    def __init__(self, in_planes, planes, stride=1, shortcut_attr="shortcut"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.add_shortcut(in_planes, planes * self.expansion, stride, shortcut_attr)

    def residual(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


def imagenet_style_resnet(block, blocks_per_stage, num_classes):
    """64-channel stem, four stages of 64/128/256/512 planes (strides 1, 2, 2, 2)."""
    stages = [(planes, count, 1 if index == 0 else 2)
              for index, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks_per_stage))]
    return ResNet(block, 64, stages, num_classes, shortcut_attr="shortcut", head_attr="linear")


register_family(imagenet_style_resnet, {
    "ResNet18": (BasicBlock, (2, 2, 2, 2)),
    "ResNet34": (BasicBlock, (3, 4, 6, 3)),
    "ResNet50": (Bottleneck, (3, 4, 6, 3)),
    "ResNet101": (Bottleneck, (3, 4, 23, 3)),
    "ResNet152": (Bottleneck, (3, 8, 36, 3)),
})
