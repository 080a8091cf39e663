"""The model zoo: output shapes, feature interface, head, and exact state_dict layout.

The reference files in tests/data/state_dicts/ list the keys and shapes of the
original CRD / dt-tradeoff models, so their checkpoints load unchanged.
"""
import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from helper.core.checkpoint import save_atomic

from models import load_model
from helper.core.errors import UserError
from models import available_models, create_model

REFERENCE_DIR = Path(__file__).parent / "data" / "state_dicts"
REFERENCE_NAME = {"mobile_half": "MobileNetV2"}  # aliases share the reference file
PREACT_MODELS = {"resnet8", "resnet32x4", "ResNet18", "ResNet50", "wrn_16_2", "ShuffleV1", "ShuffleV2", "vgg8", "vgg13"}
VGG_MODELS = ["vgg8", "vgg11", "vgg13", "vgg16", "vgg19"]


def read_index():
    """INDEX.tsv -> {name: (parameter count, feature dim)}."""
    rows = {}
    for line in (REFERENCE_DIR / "INDEX.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, params, feat_dim, _mflops = line.split("\t")
        rows[name] = (int(params), int(feat_dim))
    return rows


def read_reference(name):
    """<name>.tsv -> {key: shape string} ("AxB" or "scalar")."""
    lines = (REFERENCE_DIR / f"{name}.tsv").read_text().splitlines()[1:]
    return dict(line.split("\t") for line in lines if line.strip())


def layout(model):
    """The model's state_dict as {key: shape string}, in the reference format."""
    return {key: "x".join(map(str, value.shape)) or "scalar" for key, value in model.state_dict().items()}


INDEX = read_index()


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module", params=available_models())
def built(request, images):
    """(name, model in eval mode, features, logits) - built once per model, grouped by pytest.

    Every test reuses the 32x32 input: a new input shape costs a slow first call.
    """
    torch.manual_seed(0)
    model = create_model(request.param, num_classes=100).eval()
    with torch.no_grad():
        feats, logits = model(images, is_feat=True)
    return request.param, model, feats, logits


def test_logits_shape_and_values(built):
    _name, _model, _feats, logits = built
    assert logits.shape == (2, 100)
    assert torch.isfinite(logits).all()


def test_last_feature_is_penultimate(built, images):
    _name, model, feats, _logits = built
    assert isinstance(feats, list) and len(feats) >= 2
    assert feats[-1].shape == (2, model.feat_dim)
    with torch.no_grad():
        assert torch.allclose(model.penultimate(images), feats[-1], atol=1e-6)


def test_head_is_linear_that_made_logits(built):
    _name, model, feats, logits = built
    head = model.head
    assert isinstance(head, nn.Linear) and model.num_classes == 100
    assert (head.in_features, head.out_features) == (model.feat_dim, 100)
    with torch.no_grad():
        assert torch.allclose(head(feats[-1]), logits, atol=1e-5)


def test_sizes_match_index(built):
    name, model, _feats, _logits = built
    reference = REFERENCE_NAME.get(name, name)
    if reference not in INDEX:
        pytest.skip(f"{name} is not in INDEX.tsv")
    params, feat_dim = INDEX[reference]
    assert model.feat_dim == feat_dim
    assert sum(p.numel() for p in model.parameters()) == params


def test_state_dict_matches_reference(built):
    name, model, _feats, _logits = built
    path = REFERENCE_DIR / f"{REFERENCE_NAME.get(name, name)}.tsv"
    if not path.exists():
        pytest.skip(f"no reference state_dict for {name}")
    assert layout(model) == read_reference(path.stem)


def test_preact_keeps_feature_shapes(built, images):
    name, model, feats, logits = built
    with torch.no_grad():
        pre_feats, pre_logits = model(images, is_feat=True, preact=True)
    assert [f.shape for f in pre_feats] == [f.shape for f in feats]
    assert torch.allclose(pre_feats[-1], feats[-1], atol=1e-6)
    assert torch.allclose(pre_logits, logits, atol=1e-5)
    if name in PREACT_MODELS:  # stage features before the ReLU take negative values
        assert all((f < 0).any() for f in pre_feats[1:-1])


def test_reset_head_changes_only_the_head(built, images):
    _name, model, _feats, _logits = built
    before = {key: value.clone() for key, value in model.state_dict().items()}
    old_keys = {key for key in before if key.startswith(model.head_attr + ".")}
    old_head = model.head
    new_head = model.reset_head(10)
    assert new_head is model.head and new_head.out_features == 10
    with torch.no_grad():
        assert model(images).shape == (2, 10)
    after = model.state_dict()
    model.reset_head(100).load_state_dict(old_head.state_dict())  # the fixture is shared
    assert set(after) == set(before)
    for key, value in before.items():
        if key in old_keys:
            assert after[key].shape[0] == 10
        else:
            assert torch.equal(after[key], value), key


def test_resnext32_32x2d_follows_its_siblings():
    """Same layout as 16x4d; grouped convs have D = 32/64/128 channels in 32 groups."""
    expected = read_reference("resnext32_16x4d")
    for key, shape in expected.items():
        if key.endswith("conv_conv.weight"):
            inner = int(shape.split("x")[0])
            expected[key] = f"{inner}x{inner // 32}x3x3"
    model = create_model("resnext32_32x2d", 100)
    assert layout(model) == expected
    assert model.stage_1.stage_1_bottleneck_0.conv_conv.groups == 32


def test_preact_features_are_pre_relu_stage_outputs(images):
    model = create_model("resnet8", 100).eval()
    with torch.no_grad():
        feats = model.forward_features(images)
        pre_feats = model.forward_features(images, preact=True)
    assert torch.equal(pre_feats[0], feats[0])
    for before_relu, after_relu in zip(pre_feats[1:-1], feats[1:-1]):
        assert torch.allclose(torch.relu(before_relu), after_relu)


def test_wrn_preact_does_not_move_running_stats(images):
    torch.manual_seed(0)
    plain = create_model("wrn_16_1", 100).train()
    with_preact = copy.deepcopy(plain)
    plain(images, is_feat=True)
    with_preact(images, is_feat=True, preact=True)
    for (key, a), b in zip(plain.state_dict().items(), with_preact.state_dict().values()):
        assert torch.equal(a, b), key


def test_vgg_stage_shapes_follow_crd(images):
    """Pools after blocks 0-2 only on 32x32 (block 4 on 4x4 maps); a 64x64 input is pooled once more."""
    model = create_model("vgg8", 100).eval()
    with torch.no_grad():
        feats = model.forward_features(images)
        large = model.forward_features(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4),
                                                   (512, 4, 4), (512,)]
    assert tuple(large[4].shape[1:]) == (512, 4, 4) and tuple(large[3].shape[1:]) == (512, 8, 8)
    assert all(not isinstance(m, nn.ReLU) for m in (block[-1] for block in
                                                      (model.block0, model.block1, model.block4)))


@pytest.mark.parametrize("name", VGG_MODELS)
def test_vgg_original_checkpoint_with_module_prefix_loads(name, tmp_path):
    """A DataParallel checkpoint of CRD's code (no metadata, `module.` keys) loads strictly, unchanged."""
    model = create_model(name, 100)
    path = str(tmp_path / "ckpt_epoch_240.pth")
    save_atomic({"epoch": 240, "model": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    loaded, ckpt = load_model(path, arch=name)
    assert loaded.num_classes == 100 and ckpt["epoch"] == 240
    for (key, value), (loaded_key, loaded_value) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert key == loaded_key and torch.equal(value, loaded_value), key


def test_mobile_half_is_mobilenetv2():
    assert layout(create_model("mobile_half", 100)) == layout(create_model("MobileNetV2", 100))


def test_num_classes_argument():
    model = create_model("resnet8", num_classes=7)
    assert model.num_classes == 7 and model.head.weight.shape == (7, 64)


def test_unknown_model_lists_choices():
    with pytest.raises(UserError) as info:
        create_model("resnet9000", 100)
    message = str(info.value)
    assert "resnet9000" in message
    assert all(name in message for name in available_models())


def test_every_reference_layout_names_a_registered_model():
    """The original code's models (one reference state_dict each) are all registered; mobile_half and
    resnext32_32x2d have tests of their own above, and tests/test_registries.py runs every registered model."""
    references = {path.stem for path in REFERENCE_DIR.glob("*.tsv")} - {"INDEX"}
    assert references == set(INDEX)
    assert references <= set(available_models()), references - set(available_models())
    assert set(REFERENCE_NAME) <= set(available_models()) and set(REFERENCE_NAME.values()) <= references
