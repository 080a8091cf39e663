"""CIFAR ResNets of CRD (RepDistiller): resnet8 ... resnet110, resnet8x4, resnet32x4.

Also the residual machinery reused by `models.resnet_imagenet`: a block base
class that returns `(out, preact)` and a generic staged ResNet.
"""
from torch import nn
import torch.nn.functional as F

from .base import ImageClassifier
from .layers import global_pool, init_conv_bn, projection_shortcut, register_family, stage_features


class ResidualBlock(nn.Module):
    """relu(residual(x) + shortcut(x)); returns `(out, preact)`.

    Subclasses build their layers, then call `add_shortcut`; the shortcut is stored
    under `shortcut_attr` ("downsample" in CRD's CIFAR ResNet, "shortcut" in the
    ImageNet-style one) so the state_dict keys match the original code.
    """

    expansion = 1

    def add_shortcut(self, in_planes, out_planes, stride, shortcut_attr):
        self.shortcut_attr = shortcut_attr
        needs_projection = stride != 1 or in_planes != out_planes
        setattr(self, shortcut_attr,
                projection_shortcut(in_planes, out_planes, stride) if needs_projection else nn.Identity())

    def residual(self, x):
        raise NotImplementedError

    def forward(self, x):
        """(B, C_in, H, W) -> two (B, C_out, H/stride, W/stride): after and before the ReLU."""
        preact = self.residual(x) + getattr(self, self.shortcut_attr)(x)
        return F.relu(preact), preact


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (the first strided), each followed by BN."""

    def __init__(self, in_planes, planes, stride=1, shortcut_attr="downsample"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.add_shortcut(in_planes, planes, stride, shortcut_attr)

    def residual(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class ResNet(ImageClassifier):
    """3x3 stem conv + BN + ReLU, residual stages `layer1..layerN`, global pool, linear head.

    stem_width: channels after the stem; stage_planes: (planes, num_blocks, stride)
    per stage; the last stage gives `feat_dim = planes * block.expansion`.
    forward_features -> [f0 (stem), f1, ..., fN (stage outputs), pooled (B, feat_dim)].
    """

    def __init__(self, block, stem_width, stage_planes, num_classes=100,
                 shortcut_attr="downsample", head_attr="fc"):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        in_planes = stem_width
        self.stage_names = []
        for index, (planes, num_blocks, stride) in enumerate(stage_planes, start=1):
            blocks = []
            for block_index in range(num_blocks):
                blocks.append(block(in_planes, planes, stride if block_index == 0 else 1,
                                    shortcut_attr=shortcut_attr))
                in_planes = planes * block.expansion
            self.stage_names.append(f"layer{index}")
            setattr(self, self.stage_names[-1], nn.Sequential(*blocks))
        self.feat_dim = in_planes
        self.head_attr = head_attr
        setattr(self, head_attr, nn.Linear(in_planes, num_classes))
        init_conv_bn(self)

    def forward_features(self, x, preact=False):
        """(B, 3, H, W) -> [stem, stage outputs (pre-ReLU if `preact`)..., (B, feat_dim)]."""
        stem = F.relu(self.bn1(self.conv1(x)))
        stages = [getattr(self, name) for name in self.stage_names]
        feats, x = stage_features(stem, stages, preact)
        return [stem, *feats, global_pool(x)]


def cifar_resnet(depth, widths, num_classes):
    """CRD's `ResNet(depth, num_filters)`: (depth - 2) / 6 BasicBlocks per stage, 3 stages."""
    blocks_per_stage = (depth - 2) // 6
    stages = [(widths[1], blocks_per_stage, 1), (widths[2], blocks_per_stage, 2),
              (widths[3], blocks_per_stage, 2)]
    return ResNet(BasicBlock, widths[0], stages, num_classes)


THIN = (16, 16, 32, 64)
WIDE = (32, 64, 128, 256)
CIFAR_RESNETS = {"resnet8": (8, THIN), "resnet14": (14, THIN), "resnet20": (20, THIN),
                 "resnet32": (32, THIN), "resnet44": (44, THIN), "resnet56": (56, THIN),
                 "resnet110": (110, THIN), "resnet8x4": (8, WIDE), "resnet32x4": (32, WIDE)}


register_family(cifar_resnet, CIFAR_RESNETS)
