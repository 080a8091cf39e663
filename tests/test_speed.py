"""helper/core/speed.py: flags, defaults per device, autocast, model preparation, and the sweeps' speed flags."""
import argparse
import os

import pytest
import torch

import mine
import transfer
from dataset import get_dataset
from dataset.device_loader import DeviceLoader
from helper.core.checkpoint import model_state
from helper.core.errors import UserError
from helper.cli.sweep import feature_config, settled_sweep_flags, source_config, sweep_device
from helper.sweep.features import extract_features, feature_loader
from helper.sweep.source_run import load_source
from helper.core.speed import autocast, prepare_model
from helper.cli.speed import add_speed_args, describe, resolve_speed_args, speed_argv
from models import create_model
from tests.helpers import cli, needs_compiler


def parse(argv, **extra):
    args = add_speed_args(argparse.ArgumentParser()).parse_args(argv)
    vars(args).update(extra)
    return args


@pytest.fixture(autouse=True)
def keep_cudnn_flag(monkeypatch):
    """resolve_speed_args(cuda) turns cuDNN autotuning on process-wide: give each test's flag back."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)


@pytest.fixture(scope="module")
def model_and_batch():
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=5).eval()
    return model, torch.randn(4, 3, 32, 32)


def test_flags_parse_to_tri_state():
    assert (parse([]).amp, parse([]).channels_last, parse([]).compile, parse([]).loader) == (None, None, None, "auto")
    args = parse(["--amp", "--no_channels_last", "--compile", "--loader", "gpu"])
    assert (args.amp, args.channels_last, args.compile, args.loader) == (True, False, True, "gpu")
    assert parse(["--no_amp"]).amp is False


def test_cpu_defaults_are_all_off_and_cpu_loader():
    digits = get_dataset("digits_a", "train", augment="standard")
    args = resolve_speed_args(parse([]), torch.device("cpu"), digits)
    assert (args.amp, args.channels_last, args.compile, args.loader) == (False, False, False, "cpu")
    assert describe(args) == "amp=off channels_last=off compile=off loader=cpu"


def test_cuda_defaults_and_explicit_flags_win(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    args = resolve_speed_args(parse([]), torch.device("cuda"))        # no data set: nothing to place on the GPU
    assert torch.backends.cudnn.benchmark                             # autotuned convolutions, as the original
    assert (args.amp, args.channels_last, args.compile, args.loader) == (True, True, False, "cpu")
    args = resolve_speed_args(parse(["--no_amp", "--compile"]), torch.device("cuda"))
    assert (args.amp, args.channels_last, args.compile) == (False, True, True)
    with pytest.raises(UserError, match="AutoAugment"):
        resolve_speed_args(parse(["--loader", "gpu"], augment="auto"), torch.device("cpu"))


def test_speed_argv_passes_the_resolved_flags_on():
    resolved = resolve_speed_args(parse(["--compile"]), torch.device("cuda"))
    again = parse(speed_argv(resolved))
    assert (again.amp, again.channels_last, again.compile) == (True, True, True)
    assert speed_argv(resolve_speed_args(parse([]), torch.device("cpu"))) == ["--no_amp", "--no_channels_last",
                                                                             "--no_compile"]


def test_channels_last_gives_the_same_logits(model_and_batch):
    model, x = model_and_batch
    with torch.no_grad():
        reference = model(x)
        fast = create_model("resnet8", num_classes=5).eval()
        fast.load_state_dict(model.state_dict())
        fast = prepare_model(fast, parse(["--channels_last", "--no_compile"]))
        out = fast(x.contiguous(memory_format=torch.channels_last))
    assert fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.amp.autocast_mode.is_autocast_available("cpu"), reason="no CPU autocast")
def test_bf16_autocast_close_to_fp32_and_off_on_cpu_by_default(model_and_batch):
    model, x = model_and_batch
    with torch.no_grad():
        reference = model(x)
        with autocast("cpu", True):                                    # CPU: a no-op unless allowed
            assert model(x).dtype == torch.float32
        with autocast("cpu", True, allow_cpu=True):
            low = model(x)
    assert low.dtype == torch.bfloat16
    error = (low.float() - reference).abs().max()
    assert 0 < error < 0.05 * reference.abs().max() + 0.05


def test_compiled_model_saves_bare_keys(model_and_batch):
    model, _ = model_and_batch
    compiled = prepare_model(model, parse(["--compile"]))               # compilation itself is lazy
    assert compiled is not model
    assert any(key.startswith("_orig_mod.") for key in compiled.state_dict())
    assert list(model_state(compiled)) == list(model.state_dict())


def sweep_args(argv):
    return transfer.get_args_parser().parse_args(["--ckpt_path", "x", "--target_dataset", "digits_b", *argv])


def test_sweep_defaults_follow_the_device():
    args = sweep_args([])
    assert (args.amp, args.channels_last, args.compile) == (False, None, None)
    settled = settled_sweep_flags(args, torch.device("cuda"))
    assert (settled.amp, settled.channels_last, settled.compile) == (False, True, False)   # features: the paper's fp32
    assert (args.amp, args.channels_last, args.compile) == (False, None, None)             # the parsed flags stay
    fits = mine.get_args_parser().parse_args(["--mode", "xt", "--dataset", "digits_a", "--ckpt_path", "x"])
    for device in ("cuda", "cpu"):                          # MINE fits: fp32 (TF32 matmuls on CUDA), docs/mine.md
        resolved = resolve_speed_args(argparse.Namespace(**vars(fits)), torch.device(device), pick_loader=False)
        assert resolved.amp is False and resolved.tf32 is True
    assert settled.loader == "auto"                       # decided per split when its loader is built
    args = sweep_args(["--device", "cpu", "--compile"])
    assert sweep_device(args) == torch.device("cpu")
    settled = settled_sweep_flags(args, sweep_device(args))
    assert (settled.channels_last, settled.compile, settled.loader) == (False, True, "auto")


def test_sweep_device_loader_uploads_each_split_once_and_gives_the_same_features(digits_run):
    split = get_dataset("digits_b", "test")
    model, _ = load_source(os.path.join(digits_run, "ckpt_epoch_2.pth"),
                           source_config(sweep_args(["--model", "resnet8"])), "cpu")
    cpu = torch.device("cpu")
    loaders = {name: feature_loader(split, feature_config(sweep_args(["--loader", name, "--extract_batch", "64",
                                                                      "--no_channels_last"])), cpu)
               for name in ("cpu", "gpu", "auto")}
    assert isinstance(loaders["gpu"], DeviceLoader) and not isinstance(loaders["auto"], DeviceLoader)  # auto: CUDA only
    again = feature_loader(split, feature_config(sweep_args(["--loader", "gpu", "--extract_batch", "64",
                                                             "--no_channels_last"])), cpu)
    assert again is loaders["gpu"]                        # the next checkpoint reuses the uploaded split
    (reference, labels), (resident, resident_labels) = (extract_features(model, loaders[name], cpu)
                                                        for name in ("cpu", "gpu"))
    assert torch.equal(resident_labels, labels) and len(labels) == len(split)
    torch.testing.assert_close(resident, reference, atol=1e-5, rtol=1e-5)


def test_sweep_loads_channels_last_and_extracts_the_same_features(digits_run):
    path = os.path.join(digits_run, "ckpt_epoch_2.pth")
    images = torch.utils.data.TensorDataset(torch.randn(12, 3, 32, 32), torch.arange(12) % 5)
    loader = torch.utils.data.DataLoader(images, batch_size=6)
    plain, _ = load_source(path, source_config(sweep_args(["--model", "resnet8", "--no_channels_last"])), "cpu")
    fast, _ = load_source(path, source_config(sweep_args(["--model", "resnet8", "--channels_last"])), "cpu")
    assert fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(extract_features(fast, loader, "cpu")[0], extract_features(plain, loader, "cpu")[0],
                               atol=1e-5, rtol=1e-5)


@needs_compiler
def test_compiled_features_match_eager_and_compile_once_for_every_checkpoint():
    """A sweep loads a new model per checkpoint: the compiled feature function must not recompile for it."""
    torch._dynamo.reset()
    images = torch.utils.data.TensorDataset(torch.randn(8, 3, 32, 32), torch.arange(8) % 5)
    loader = torch.utils.data.DataLoader(images, batch_size=4)
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = create_model("resnet8", num_classes=5)
        eager, labels = extract_features(model, loader, "cpu")
        with torch._dynamo.config.patch(error_on_recompile=seed > 0):
            fast, fast_labels = extract_features(model, loader, "cpu", compile=True)
        torch.testing.assert_close(fast, eager, atol=1e-4, rtol=1e-4)
        assert torch.equal(fast_labels, labels)


def test_bench_measures_every_piece_and_records_the_device(tmp_path, capsys, monkeypatch):
    """bench.py end to end at its quick sizes (resnet8 for training too): a row per benchmark, JSON with the device."""
    import json

    import bench
    monkeypatch.chdir(tmp_path)
    args = bench.get_args_parser().parse_args(["--quick", "--model", "resnet8", "--train_images", "128",
                                               "--num_workers", "0", "--device", "cpu", "--ablate", "amp",
                                               "channels_last"])
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    (path,) = (tmp_path / "save" / "bench").iterdir()                  # the default JSON path
    record = json.loads(path.read_text())
    assert path.name.startswith("bench_") and path.name.endswith("_quick.json") and record["device"] == "cpu"
    assert record["device_name"] and record["torch"] == torch.__version__
    names = [row["name"] for row in record["results"]]
    expected = ["train", "ctc", "probe", "mine", "discriminability", "+", "flags"]   # "+": the three measures' row
    assert [n.split()[0] for n in names] == expected, names
    assert names[-1].startswith("flags +channels_last")                # amp: nothing to measure on CPU
    assert record["results"][1]["config"]["speed"] == "amp=off channels_last=off compile=off"  # ctc: train's flags
    for row in record["results"]:
        assert row["reference"] > 0 and row["ours"] > 0 and row["ratio"] > 0 and row["name"] in out


@pytest.mark.parametrize("argv, expected", [(["--only", "trian"], "--only takes train, ctc"),
                                            (["--ablate", "fp16"], "--ablate takes amp, channels_last, compile")])
def test_bench_refuses_unknown_names(argv, expected, capsys):
    import bench
    code, _, err = cli(bench.main, bench.get_args_parser(), argv + ["--device", "cpu", "--no_json"], capsys)
    assert code == 2 and expected in err and "Traceback" not in err
