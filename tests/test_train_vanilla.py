"""train_vanilla.py end to end on the embedded digits data: files, loss, exact resume, bad input."""
import json
import math
import os

import numpy as np
import pytest
import torch

import dataset.variants
import train_ctc
import train_vanilla
from dataset import DeviceLoader, get_dataset
from dataset.variants import eval_shard
from dataset.variants import ArrayDataset
from helper.core.checkpoint import CheckpointError, load_checkpoint, save_atomic
from models import load_model
from helper.train.engine import TrainingRun, changed_args
from helper.cli.train import loader_config, schedule_config, warmup_epochs
from helper.train.schedule import make_lr_schedule
from helper.train.setup import val_loader, validation
from models import create_model
from tests.helpers import needs_compiler, stop_after

BASE = ["--dataset", "digits_a", "--model", "resnet8", "--batch_size", "64", "--num_workers", "0",
        "--learning_rate", "0.05", "--no_progress", "--note", "test"]


def run(argv):
    return train_vanilla.main(train_vanilla.get_args_parser().parse_args(BASE + argv))


def final_weights(run_dir):
    return load_checkpoint(os.path.join(run_dir, "resnet8_last.pth"))["model"]


def test_two_epochs_write_the_expected_files_and_the_loss_falls(in_tmp):
    result = run(["--epochs", "2", "--save_freq", "1"])
    run_dir = result.run_dir
    assert os.path.basename(run_dir) == "resnet8_digits_a_lr_0.05_trial_0_test"
    for name in ["ckpt_epoch_0.pth", "ckpt_epoch_1.pth", "ckpt_epoch_2.pth", "resnet8_best.pth",
                 "resnet8_last.pth", "resume.pth", "args.json", "log.txt"]:
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert not [f for f in os.listdir(run_dir) if f.startswith(".tmp_")]
    ckpt = load_checkpoint(os.path.join(run_dir, "ckpt_epoch_2.pth"))
    assert ckpt["epoch"] == 2 and ckpt["arch"] == "resnet8" and ckpt["dataset"] == "digits_a"
    assert ckpt["num_classes"] == 5 and ckpt["feat_dim"] == 64 and ckpt["args"]["seed"] == 0
    assert 0.0 <= ckpt["accuracy"] <= 100.0
    init = load_checkpoint(os.path.join(run_dir, "ckpt_epoch_0.pth"))["model"]
    assert not torch.equal(init["conv1.weight"], ckpt["model"]["conv1.weight"])
    log = [json.loads(line) for line in open(os.path.join(run_dir, "log.txt"))]
    assert [r["epoch"] for r in log] == [1, 2]
    assert log[1]["train_loss"] < log[0]["train_loss"]
    assert log[1]["val_acc1"] > 100 / 5  # better than chance on 5 classes
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(os.path.join(run_dir, "ckpt_epoch_2.pth")).st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    board = EventAccumulator(os.path.join("save", "tensorboard", os.path.basename(run_dir))).Reload()
    tags = board.Tags()["scalars"]
    assert {"lr", "train/loss", "train/acc1", "val/loss", "val/acc1", "val/acc5"} <= set(tags)
    assert [e.step for e in board.Scalars("val/acc1")] == [1, 2]
    assert board.Scalars("val/acc1")[-1].value == pytest.approx(log[1]["val_acc1"], rel=1e-5)


@needs_compiler
def test_channels_last_and_compile_train_within_noise(in_tmp):
    """Speed flags change float rounding, not the training: a seed changes the epoch-2 loss by ~2 %."""
    def last_epoch(note, *flags):
        run_dir = run(["--epochs", "2", "--note", note, *flags]).run_dir
        return run_dir, json.loads(open(os.path.join(run_dir, "log.txt")).readlines()[-1])

    _, plain = last_epoch("plain")
    fast_dir, fast = last_epoch("fast", "--channels_last", "--compile")
    assert abs(fast["train_loss"] - plain["train_loss"]) < 0.03 and abs(fast["train_acc1"] - plain["train_acc1"]) < 3
    args = json.load(open(os.path.join(fast_dir, "args.json")))
    assert args["channels_last"] is True and args["compile"] is True
    assert not any(key.startswith("_orig_mod.") for key in final_weights(fast_dir))
    load_model(os.path.join(fast_dir, "resnet8_last.pth"))         # strict: loads into an eager model


def test_validation_on_the_device_loader_equals_the_dataloader_and_shards_stay_arrays(monkeypatch):
    """--loader gpu validates from an uploaded copy of the split; under torchrun each rank's shard is one too."""
    args, val, cpu = train_vanilla.get_args_parser().parse_args(BASE), get_dataset("digits_a", "test"), torch.device("cpu")
    model = create_model("resnet8", num_classes=5)
    metrics = {}
    for loader in ("cpu", "gpu"):
        args.loader = loader
        metrics[loader] = validation(loader_config(args), model, val, cpu)()
    assert isinstance(val_loader(loader_config(args), val, cpu), DeviceLoader)
    assert metrics["gpu"] == pytest.approx(metrics["cpu"], rel=1e-5)

    monkeypatch.setattr(dataset.variants, "is_distributed", lambda: True)
    monkeypatch.setattr(dataset.variants, "get_world_size", lambda: 2)
    for rank in (0, 1):
        monkeypatch.setattr(dataset.variants, "get_rank", lambda rank=rank: rank)
        shard = eval_shard(val)
        assert type(shard) is ArrayDataset and isinstance(val_loader(loader_config(args), val, cpu), DeviceLoader)
        np.testing.assert_array_equal(shard.data, val.data[rank::2])
        np.testing.assert_array_equal(shard.targets, val.targets[rank::2])


def original_vanilla_lr(epoch, epochs, lr0=0.05, warmup=5, floor=0.1):
    """The original train_vanilla.py's adjust_learning_rate_cosine, written out."""
    if epoch <= warmup:
        return lr0 * epoch / warmup
    return lr0 * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * epoch / (epochs + 1))))


def test_default_schedule_is_the_original_warmup_and_floored_cosine():
    args = train_vanilla.get_args_parser().parse_args(["--epochs", "200"])
    schedule = schedule_config(args, train_vanilla.WARMUP_EPOCHS)
    lr_at = make_lr_schedule(schedule)
    assert (schedule.warmup_epochs, args.min_lr_scale) == (5, 0.1)
    for epoch in (1, 5, 6, 100, 180, 200):
        assert abs(lr_at(epoch) - original_vanilla_lr(epoch, 200)) < 1e-12, epoch
    assert lr_at(1) == pytest.approx(0.01) and lr_at(5) == pytest.approx(0.05)
    assert lr_at(180) == pytest.approx(0.00620, abs=1e-5) and lr_at(200) == pytest.approx(0.00500, abs=1e-5)


@pytest.mark.parametrize("flags, first_lrs", [
    ([], [0.05, 0.05, 0.05]),                                  # CRD / ITRD step decay: no warm-up unless asked
    (["--warmup_epochs", "2"], [0.025, 0.05, 0.05]),
])
def test_step_decay_warms_up_only_when_asked(flags, first_lrs):
    args = train_vanilla.get_args_parser().parse_args(["--step_decay_epochs", "150,180,210", "--epochs", "240"] + flags)
    lr_at = make_lr_schedule(schedule_config(args, train_vanilla.WARMUP_EPOCHS))
    assert [lr_at(e) for e in (1, 2, 3)] == pytest.approx(first_lrs)
    assert lr_at(151) == pytest.approx(0.005) and lr_at(240) == pytest.approx(0.05 * 0.1 ** 3)


def test_ctc_schedule_keeps_the_original_ctc_defaults():
    args = train_ctc.get_args_parser().parse_args([])
    assert (warmup_epochs(args, 0), args.min_lr_scale) == (0, 0.0)


@pytest.mark.parametrize("flags, stop", [
    (["--epochs", "2"], 1),                            # inside the default 5-epoch warm-up
    (["--epochs", "2", "--warmup_epochs", "1"], 1),    # stopped at the warm-up's end, resumed into the cosine
])
def test_stop_and_resume_ends_with_the_same_weights(in_tmp, monkeypatch, flags, stop):
    straight = run(flags + ["--model_path", "straight"])
    original_end = stop_after(monkeypatch, stop)
    with pytest.raises(KeyboardInterrupt):
        run(flags + ["--model_path", "resumed"])
    monkeypatch.setattr(TrainingRun, "end_epoch", original_end)
    resumed = run(flags + ["--model_path", "resumed", "--resume"])
    a, b = final_weights(straight.run_dir), final_weights(resumed.run_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = [json.loads(line) for line in open(os.path.join(resumed.run_dir, "log.txt"))]
    epochs, warmup = straight.flags["epochs"], straight.flags["warmup_epochs"]
    assert [r["epoch"] for r in log] == list(range(1, epochs + 1))
    assert [r["lr"] for r in log] == pytest.approx([original_vanilla_lr(e, epochs, warmup=warmup)
                                                    for e in range(1, epochs + 1)], abs=1e-12)


def test_train_per_class_trains_on_a_class_balanced_subset(in_tmp):
    run_dir = run(["--epochs", "1", "--train_per_class", "4"]).run_dir
    with open(os.path.join(run_dir, "args.json")) as f:
        assert json.load(f)["train_per_class"] == 4
    (record,) = [json.loads(line) for line in open(os.path.join(run_dir, "log.txt"))]
    correct = record["train_acc1"] * 20 / 100                              # of the 20 images, 5 % each
    assert correct == pytest.approx(round(correct), abs=1e-6)


def test_existing_run_folder_needs_resume_or_overwrite(in_tmp, capsys):
    run(["--epochs", "1"])
    with pytest.raises(SystemExit) as exc:
        train_vanilla.run_cli(train_vanilla.main, train_vanilla.get_args_parser(), BASE + ["--epochs", "1"])
    assert exc.value.code == 2
    assert "--resume" in capsys.readouterr().err


def test_unknown_model_and_dataset_list_the_choices(capsys):
    parser = train_vanilla.get_args_parser()
    for flag, value, expected in [("--model", "resnet9000", "resnext32_16x4d"), ("--dataset", "mnist", "cinic10")]:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([flag, value])
        assert exc.value.code == 2
        assert expected in capsys.readouterr().err


@pytest.mark.parametrize("name, folder", [("cinic10", "CINIC-10"), ("cifar100", "cifar-100-python")])
def test_missing_data_is_one_clear_message(in_tmp, capsys, monkeypatch, name, folder):
    import dataset.cifar
    monkeypatch.setattr(dataset.cifar, "try_download", lambda *a, **kw: False)   # no network in tests
    argv = ["--dataset", name, "--data_folder", str(in_tmp / "nowhere"), "--model", "resnet8", "--no_progress"]
    with pytest.raises(SystemExit) as exc:
        train_vanilla.run_cli(train_vanilla.main, train_vanilla.get_args_parser(), argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert os.path.join("nowhere", folder) in err.replace("\n", "") and "Traceback" not in err


def test_checkpoint_of_another_architecture_names_both(in_tmp):
    from models import create_model
    path = str(in_tmp / "r8.pth")
    save_atomic({"epoch": 1, "model": create_model("resnet8", 5).state_dict(), "accuracy": 1.0, "arch": "resnet8"}, path)
    with pytest.raises(CheckpointError, match="resnet8.*resnet14"):
        load_model(path, arch="resnet14")
    # an original-style checkpoint without metadata: the architecture is recognised from its keys
    save_atomic({"model": create_model("resnet8", 5).state_dict()}, path)
    with pytest.raises(CheckpointError, match="resnet8.*resnet14"):
        load_model(path, arch="resnet14")


def test_module_prefixed_state_dict_loads_with_identical_outputs(in_tmp):
    torch.manual_seed(0)
    net = create_model("resnet8", 7).eval()
    path = str(in_tmp / "dp.pth")
    save_atomic({"epoch": 3, "model": {f"module.{k}": v for k, v in net.state_dict().items()}, "accuracy": 5.0}, path)
    loaded, ckpt = load_model(path, arch="resnet8")
    assert loaded.num_classes == 7 and ckpt["epoch"] == 3
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(net(x), loaded.eval()(x))


def test_corrupt_checkpoint_is_reported_by_name(in_tmp):
    path = in_tmp / "ckpt_epoch_4.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="ckpt_epoch_4.pth"):
        load_checkpoint(str(path))


def test_device_resident_loader_trains_and_resumes_exactly(in_tmp, monkeypatch):
    """--loader gpu (the whole uint8 set on the device, augmented there) runs on a CPU device too."""
    straight = run(["--epochs", "2", "--model_path", "straight", "--loader", "gpu"])
    assert straight.flags["loader"] == "gpu"
    original_end = stop_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        run(["--epochs", "2", "--model_path", "resumed", "--loader", "gpu"])
    monkeypatch.setattr(TrainingRun, "end_epoch", original_end)
    resumed = run(["--epochs", "2", "--model_path", "resumed", "--loader", "gpu", "--resume"])
    a, b = final_weights(straight.run_dir), final_weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in open(os.path.join(straight.run_dir, "log.txt"))]
    assert log[1]["train_loss"] < log[0]["train_loss"]


def test_resume_with_changed_flags_is_refused_unless_allowed(in_tmp, monkeypatch, capsys):
    original_end = stop_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        run(["--epochs", "3"])
    monkeypatch.setattr(TrainingRun, "end_epoch", original_end)
    argv = BASE + ["--epochs", "2", "--resume"]           # cosine over 2 epochs instead of 3
    with pytest.raises(SystemExit) as exc:
        train_vanilla.run_cli(train_vanilla.main, train_vanilla.get_args_parser(), argv)
    err = " ".join(capsys.readouterr().err.split())
    assert exc.value.code == 2 and "--epochs was 3, now 2" in err
    done = run(["--epochs", "2", "--resume", "--allow_arg_changes", "--num_workers", "0"])
    log = [json.loads(line) for line in open(os.path.join(done.run_dir, "log.txt"))]
    assert log[1]["changed_args"] == {"epochs": [3, 2]} and [r.get("epoch") for r in log] == [1, None, 2]


def test_runs_from_before_warmup_existed_resume_with_zero_warmup():
    """An args.json without warmup_epochs had none: only an explicit 0 continues it unchanged
    (--print_freq, which only prints, may change freely)."""
    saved = {"epochs": 200, "min_lr_scale": 0.0}
    assert changed_args(saved, {"epochs": 200, "min_lr_scale": 0.0, "warmup_epochs": 0, "print_freq": 100}) == {}
    assert changed_args(saved, {"epochs": 200, "min_lr_scale": 0.1, "warmup_epochs": 5}) == {
        "min_lr_scale": (0.0, 0.1), "warmup_epochs": (0, 5)}


def test_overwrite_removes_the_previous_run(in_tmp):
    first = run(["--epochs", "2", "--save_freq", "1"])
    second = run(["--epochs", "1", "--save_freq", "1", "--overwrite", "--weight_decay", "0.001"])
    assert sorted(f for f in os.listdir(second.run_dir) if f.startswith("ckpt_")) == [
        "ckpt_epoch_0.pth", "ckpt_epoch_1.pth"]
    assert [json.loads(line)["epoch"] for line in open(os.path.join(first.run_dir, "log.txt"))] == [1]
    assert load_checkpoint(os.path.join(second.run_dir, "resume.pth"))["args"]["weight_decay"] == 0.001


def test_a_failure_in_the_first_epoch_can_be_resumed(in_tmp, monkeypatch):
    """resume.pth is written with ckpt_epoch_0, so an interrupted first epoch continues from the start."""
    original = TrainingRun.end_epoch

    def crash(self, epoch, *args, **kw):  # dies before epoch 1 is saved
        raise KeyboardInterrupt
    monkeypatch.setattr(TrainingRun, "end_epoch", crash)
    with pytest.raises(KeyboardInterrupt):
        run(["--epochs", "1", "--model_path", "resumed"])
    monkeypatch.setattr(TrainingRun, "end_epoch", original)
    resumed = run(["--epochs", "1", "--model_path", "resumed", "--resume"])
    straight = run(["--epochs", "1", "--model_path", "straight"])
    a, b = final_weights(straight.run_dir), final_weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_of_a_folder_holding_only_the_initialisation_starts_again(in_tmp, capsys):
    """A stop between ckpt_epoch_0.pth and the first resume.pth leaves nothing trained: --resume restarts."""
    run_dir = run(["--epochs", "1"]).run_dir
    for name in os.listdir(run_dir):
        if name != "ckpt_epoch_0.pth":
            os.remove(os.path.join(run_dir, name))
    again = run(["--epochs", "1", "--resume"])
    assert "holds only the initialisation" in capsys.readouterr().out
    assert load_checkpoint(os.path.join(again.run_dir, "resnet8_last.pth"))["epoch"] == 1
