"""Building blocks shared by several architectures of the zoo.

Nothing here owns parameters under its own name, so state_dict keys stay those
of the original CRD / dt-tradeoff modules that use these helpers.
"""
import torch
from torch import nn
import torch.nn.functional as F


def conv_bn_pair(in_channels, out_channels, kernel_size=1, stride=1, groups=1):
    """(conv without bias, BatchNorm) as a tuple; callers store them under their own names."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                     padding=kernel_size // 2, groups=groups, bias=False)
    return conv, nn.BatchNorm2d(out_channels)


def projection_shortcut(in_channels, out_channels, stride):
    """1x1 strided conv + BN, the shortcut of ResNets whose shape changes (keys `.0`, `.1`)."""
    return nn.Sequential(*conv_bn_pair(in_channels, out_channels, 1, stride))


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """Average over all positions, (B, C, H, W) -> (B, C).

    On 32x32 inputs this equals the fixed-size pools of the originals
    (AvgPool2d(8), avg_pool2d(4), ...), and it also works on other sizes.
    """
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's permutation: (B, g*n, H, W) viewed as (g, n) channels -> (n, g)."""
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width)
    return x.transpose(1, 2).reshape(batch, channels, height, width)


def run_stage(stage: nn.Sequential, x: torch.Tensor):
    """Run blocks that return `(out, preact)`; give the stage's last `(out, preact)`.

    x: (B, C, H, W); preact is the last block's output before its final ReLU.
    """
    preact = x
    for block in stage:
        x, preact = block(x)
    return x, preact


def stage_features(x: torch.Tensor, stages, preact: bool = False):
    """Run `(out, preact)` stages in turn; return (per-stage features, last output).

    The features are the stage outputs, or their pre-ReLU versions when `preact`,
    as CRD's `is_feat=True, preact=True` gives them.
    """
    feats = []
    for stage in stages:
        x, before_relu = run_stage(stage, x)
        feats.append(before_relu if preact else x)
    return feats, x


def batch_norm_no_update(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Apply `bn` to x exactly as a forward would, but leave its running statistics alone.

    Used for extra pre-activation features: the original called the BN module a
    second time, which also moved its running mean/var a second step.
    """
    use_batch_stats = bn.training or bn.running_mean is None
    return F.batch_norm(x, None if use_batch_stats else bn.running_mean,
                        None if use_batch_stats else bn.running_var,
                        bn.weight, bn.bias, training=use_batch_stats, eps=bn.eps)


def init_conv_bn(model: nn.Module, linear_std=None):
    """The usual init of the originals: He-normal (fan_out) convs, BN weight 1 bias 0.

    `linear_std`: if given, Linear weights ~ N(0, std) and biases 0 (MobileNetV2).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, 0.0, linear_std)
            nn.init.zeros_(module.bias)


def register_family(builder, configs):
    """Register `builder(*args, num_classes=n)` as `name(num_classes=100)` for each {name: args}."""
    from .registry import register_model

    def constructor(name, args):
        def build(num_classes=100):
            return builder(*args, num_classes=num_classes)
        build.__name__ = build.__qualname__ = name
        return register_model(name)(build)

    for name, args in configs.items():
        constructor(name, args)
