"""CRD's CIFAR VGGs with BatchNorm (`vgg8_bn` ... `vgg19_bn`), registered as vgg8, vgg11, vgg13, vgg16, vgg19.

The teachers and students of CRD's and ITRD's vgg13 -> vgg8, vgg13 -> MobileNetV2 and
ResNet50 -> vgg8 pairs. Five blocks `block0..block4` of [3x3 conv (with bias), BN, ReLU]
repeated, the last ReLU of each block left out (so a block ends in its pre-activation);
2x2 max pooling after blocks 0-2, global average pooling after block 4, and one linear
head `classifier` (512 -> classes). Keys: `block<b>.<3i>.{weight,bias}` (conv i),
`block<b>.<3i+1>.*` (its BN), `classifier.*`.

forward_features on 32x32 -> [f0 (B, 64, 32, 32), f1 (B, 128, 16, 16), f2 (B, 256, 8, 8),
f3 (B, 512, 4, 4), f4 (B, 512, 4, 4), (B, 512)]; f1-f4 before their ReLU with `preact`.
"""
import torch.nn.functional as F
from torch import nn

from .base import ImageClassifier
from .layers import global_pool, init_conv_bn, register_family

# Output channels of each conv, per block (CRD's cfg 'S', 'A', 'B', 'D', 'E').
VGG_BLOCKS = {
    "vgg8": ([64], [128], [256], [512], [512]),
    "vgg11": ([64], [128], [256, 256], [512, 512], [512, 512]),
    "vgg13": ([64, 64], [128, 128], [256, 256], [512, 512], [512, 512]),
    "vgg16": ([64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]),
    "vgg19": ([64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]),
}


def conv_block(in_channels, widths):
    """[conv, BN, ReLU] per width, without the final ReLU: (B, C_in, H, W) -> (B, widths[-1], H, W)."""
    layers = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        in_channels = width
    return nn.Sequential(*layers[:-1])


class VGG(ImageClassifier):
    """VGG with BatchNorm for 32x32 images; `blocks` gives each block's conv widths."""

    head_attr = "classifier"

    def __init__(self, blocks, num_classes=100):
        super().__init__()
        in_channels = 3
        self.block_names = []
        for index, widths in enumerate(blocks):
            self.block_names.append(f"block{index}")
            setattr(self, self.block_names[-1], conv_block(in_channels, widths))
            in_channels = widths[-1]
        self.feat_dim = in_channels
        self.classifier = nn.Linear(in_channels, num_classes)
        init_conv_bn(self, linear_std=0.01)

    def forward_features(self, x, preact=False):
        """(B, 3, H, W) -> [f0, f1, f2, f3, f4, (B, feat_dim)]."""
        size = x.shape[2]
        x = F.relu(self.block0(x))
        feats = [x]
        for index, name in enumerate(self.block_names[1:], start=1):
            # Pool after blocks 0-2; CRD pools after block 3 too only for 64x64 inputs,
            # so block 4 works on 4x4 maps either way.
            if index < 4 or size > 32:
                x = F.max_pool2d(x, 2)
            before_relu = getattr(self, name)(x)
            x = F.relu(before_relu)
            feats.append(before_relu if preact else x)
        feats.append(global_pool(x))
        return feats


def vgg(blocks, num_classes):
    return VGG(blocks, num_classes)


register_family(vgg, {name: (blocks,) for name, blocks in VGG_BLOCKS.items()})
