"""Model zoo for 32x32 images: one registry, one feature/head interface (`models.base`).

    from models import create_model, model_dict
    net = create_model("resnext32_16x4d", num_classes=100)
    feats, logits = net(images, is_feat=True)    # feats[-1]: (B, net.feat_dim)
"""
from .base import ImageClassifier
from .registry import model_dict, register_model, create_model, available_models
from .loading import load_model, guess_arch

# Importing the architecture modules fills the registry.
from . import resnet, resnet_imagenet, wrn, mobilenetv2, shufflenetv1, shufflenetv2, resnext, vgg  # noqa: E402,F401

__all__ = ["ImageClassifier", "model_dict", "register_model", "create_model", "available_models", "load_model", "guess_arch"]
