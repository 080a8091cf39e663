"""CRD's half-width MobileNetV2 for 32x32 images (`mobilenetv2_T_w(6, 0.5)`).

Registered as `MobileNetV2` and, as in CRD, `mobile_half`. Keys: `conv1.{0,1}`,
`blocks.<stage>.<i>.conv.{0,1,3,4,6,7}`, `conv2.{0,1}`, head `classifier.0`.
forward_features -> [f0 (stem, 16x16), f1 (16x16), f2 (8x8), f3 (4x4), f4 (2x2),
(B, 1280)]; the original has no pre-activation features, so `preact` is ignored.
"""
from torch import nn

from .base import ImageClassifier
from .layers import conv_bn_pair, global_pool, init_conv_bn, register_family

# (expansion t, output channels c, repeats n, first stride s) of MobileNetV2,
# t = T for all but the first group (t = 1).
INVERTED_RESIDUAL_SETTING = [(1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2),
                             (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1)]
# The stage outputs that CRD returns as f1..f4 (after blocks 1, 2, 4 and 6).
FEATURE_STAGES = (1, 2, 4, 6)


def conv_bn_relu(in_channels, out_channels, kernel_size, stride=1, groups=1):
    """[conv, BN, ReLU] as a list, to be spliced into an nn.Sequential."""
    return [*conv_bn_pair(in_channels, out_channels, kernel_size, stride, groups), nn.ReLU(inplace=True)]


class InvertedResidual(nn.Module):
    """1x1 expand (always present, even for t = 1), 3x3 depthwise, 1x1 linear projection."""

    def __init__(self, in_channels, out_channels, stride, expand_ratio):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            *conv_bn_relu(in_channels, hidden, 1),
            *conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            *conv_bn_pair(hidden, out_channels, 1))

    def forward(self, x):
        """(B, C_in, H, W) -> (B, C_out, H/stride, W/stride)."""
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(ImageClassifier):
    """MobileNetV2 with expansion `expansion` and channel multiplier `width_mult`."""

    head_attr = "classifier.0"

    def __init__(self, expansion=6, width_mult=0.5, num_classes=100):
        super().__init__()
        in_channels = int(32 * width_mult)
        self.conv1 = nn.Sequential(*conv_bn_relu(3, in_channels, 3, stride=2))
        self.blocks = nn.ModuleList()
        for t, channels, repeats, stride in INVERTED_RESIDUAL_SETTING:
            out_channels = int(channels * width_mult)
            layers = []
            for index in range(repeats):
                layers.append(InvertedResidual(in_channels, out_channels, stride if index == 0 else 1,
                                               t or expansion))
                in_channels = out_channels
            self.blocks.append(nn.Sequential(*layers))
        self.feat_dim = make_divisible(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = nn.Sequential(*conv_bn_relu(in_channels, self.feat_dim, 1))
        self.classifier = nn.Sequential(nn.Linear(self.feat_dim, num_classes))
        init_conv_bn(self, linear_std=0.01)

    def forward_features(self, x, preact=False):
        """(B, 3, H, W) -> [f0, f1, f2, f3, f4, (B, feat_dim)]."""
        out = self.conv1(x)
        feats = [out]
        for index, stage in enumerate(self.blocks):
            out = stage(out)
            if index in FEATURE_STAGES:
                feats.append(out)
        feats.append(global_pool(self.conv2(out)))
        return feats


def make_divisible(value, divisor=8):
    """Round up to a multiple of `divisor` (only used for width multipliers > 1)."""
    return int(-(-value // divisor) * divisor)


def mobilenet_v2(expansion, width_mult, num_classes):
    return MobileNetV2(expansion, width_mult, num_classes)


register_family(mobilenet_v2, {"MobileNetV2": (6, 0.5), "mobile_half": (6, 0.5)})
