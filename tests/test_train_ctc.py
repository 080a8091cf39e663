"""train_ctc.py end to end on the embedded digits data: both stages, the switch, exact resume,
ITRD, an external teacher, and the refusals of bad input."""
import json
import math
import os

import pytest
import torch

import train_ctc
import train_vanilla
from crd import CRDLoss, l2_normalize
from helper.cli.train import ctc_config, loader_config, sgd_config
from helper.core.checkpoint import load_checkpoint, model_checkpoint, save_atomic
from helper.train.ctc import CTCObjective
from helper.train.engine import TrainingRun
from models import create_model
from tests.helpers import stop_after

BASE = ["--dataset", "digits_a", "--model", "resnet8", "--batch_size", "64", "--num_workers", "0",
        "--learning_rate", "0.05", "--nce_k", "64", "--no_progress", "--save_freq", "1", "--note", "test"]
# 3 epochs, stage 1 = epoch 1, stage 2 = epochs 2-3: a stop after epoch 1 resumes across the
# switch, a stop after epoch 2 resumes inside stage 2.
TWO_STAGE = ["--epochs", "3", "--stage_two_epoch", "1", "--update_memory_bank", "--weight_decay", "0.0005",
             "--weight_decay_coef", "2.0", "-a", "0.5", "--instance_m", "0.9", "--nce_m", "0.9"]


def parse(argv):
    return train_ctc.get_args_parser().parse_args(BASE + argv)


def run(argv):
    return train_ctc.main(parse(argv))


def run_cli_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        train_ctc.run_cli(train_ctc.main, train_ctc.get_args_parser(), BASE + argv)
    assert exc.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err
    return err


def load(run_dir, name):
    return load_checkpoint(os.path.join(run_dir, name))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One uninterrupted two-stage run, shared by the tests that compare against it."""
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("straight"))
    try:
        return os.path.abspath(run(TWO_STAGE).run_dir)
    finally:
        os.chdir(cwd)


def test_two_stages_switch_and_write_vanilla_checkpoints(straight):
    assert os.path.basename(straight) == "resnet8_digits_a_a0.5_b1.0_test"
    for name in ["ckpt_epoch_0.pth", "ckpt_epoch_1.pth", "ckpt_epoch_2.pth", "ckpt_epoch_3.pth",
                 "resnet8_best.pth", "resnet8_last.pth", "resume.pth", "args.json", "log.txt"]:
        assert os.path.isfile(os.path.join(straight, name)), name
    ckpt = load(straight, "ckpt_epoch_3.pth")
    assert set(ckpt) >= {"epoch", "model", "accuracy", "arch", "dataset", "num_classes", "feat_dim", "args"}
    assert ckpt["epoch"] == 3 and ckpt["arch"] == "resnet8" and ckpt["num_classes"] == 5
    assert set(ckpt["model"]) == set(create_model("resnet8", 5).state_dict())  # no heads, no info bank
    log = [json.loads(line) for line in open(os.path.join(straight, "log.txt"))]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert "train_instance" in log[0] and "train_crd" not in log[0]
    assert "train_crd" in log[1] and "train_instance" not in log[1]
    assert [r["lr"] for r in log] == pytest.approx([0.05, 0.005, 0.0025])  # stage 2 restarts at 0.1 x lr
    resume = load(straight, "resume.pth")
    snapshot = load(straight, "ckpt_epoch_1.pth")["model"]
    frozen = resume["state"]["frozen"]
    assert frozen.keys() == snapshot.keys()
    for key in snapshot:  # the info bank is the model exactly as it was at the end of stage 1
        assert torch.equal(frozen[key], snapshot[key]), key
    assert not torch.equal(resume["model"]["conv1.weight"], snapshot["conv1.weight"])
    assert [g["weight_decay"] for g in resume["optimizer"]["param_groups"]] == [0.0005]
    memory = resume["state"]["criterion"]
    assert memory["memory.z_v1"] > 0 and memory["memory.memory_v1"].shape == (721, 128)


def test_stops_in_stage_1_and_in_stage_2_resume_to_the_straight_run(straight, in_tmp, monkeypatch, capsys):
    """Stop after epoch 1 (the switch then happens on resume), resume, stop after epoch 2 (the info
    bank, heads and memories must come from resume.pth), resume again: bitwise the straight run."""
    run_dir = os.path.join("save", "model", os.path.basename(straight))
    for last_epoch, argv, wd in [(1, [], 0.001), (2, ["--resume"], 0.0005)]:
        original = stop_after(monkeypatch, last_epoch)
        with pytest.raises(KeyboardInterrupt):
            run(TWO_STAGE + argv)
        monkeypatch.setattr(TrainingRun, "end_epoch", original)
        state = load(run_dir, "resume.pth")
        assert state["epoch"] == last_epoch
        assert [g["weight_decay"] for g in state["optimizer"]["param_groups"]] == pytest.approx([wd])
        switch_notes = capsys.readouterr().err.count("stage two from epoch 2: the loss is now cross-entropy + 1 x")
        assert switch_notes == (1 if last_epoch == 2 else 0)   # said where the loss jumps, once
    resumed = run(TWO_STAGE + ["--resume"]).run_dir
    assert "stage two from" not in capsys.readouterr().err
    for name in ["resnet8_last.pth", "resume.pth"]:
        a, b = load(straight, name)["model"], load(resumed, name)["model"]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    a, b = load(straight, "resume.pth")["state"], load(resumed, "resume.pth")["state"]
    for part in ["frozen", "criterion", "instance"]:
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert [json.loads(line)["epoch"] for line in open(os.path.join(resumed, "log.txt"))] == [1, 2, 3]


def test_memory_fill_embeds_the_frozen_features_without_touching_batchnorm():
    args = parse(["--stage_two_epoch", "1", "--update_memory_bank"])
    torch.manual_seed(0)
    model = create_model("resnet8", 5)
    ctc = CTCObjective(ctc_config(args), sgd_config(args), model, n_data=10, device=torch.device("cpu"))
    optimizer = torch.optim.SGD(ctc.parameters(), lr=0.1, weight_decay=0.001)
    with torch.no_grad():
        model.conv1.weight.mul_(2.0)  # the model moved on during stage 1
    running = model.bn1.running_mean.clone()
    images = torch.randn(10, 3, 32, 32)
    loader = [(images[:6], torch.zeros(6), torch.arange(6)), (images[6:], torch.zeros(4), torch.arange(6, 10))]
    ctc.start_stage_two(optimizer, loader)
    assert torch.equal(ctc.frozen.conv1.weight, model.conv1.weight)
    assert not ctc.frozen.conv1.weight.requires_grad and not ctc.frozen.training
    assert optimizer.param_groups[0]["weight_decay"] == 0.0005
    assert torch.equal(model.bn1.running_mean, running) and model.training
    with torch.no_grad():
        model.eval()
        expected = l2_normalize(ctc.criterion.embed_t(ctc.frozen.penultimate(images)))
    assert torch.allclose(ctc.criterion.memory.memory_v2, expected, atol=1e-6)
    assert isinstance(ctc.criterion, CRDLoss)


def test_itrd_stage_two_against_the_networks_own_snapshot(in_tmp):
    run_dir = run(["--epochs", "2", "--stage_two_epoch", "1", "--stage_two_loss", "itrd", "--note", "ctc_itrd"]).run_dir
    assert os.path.basename(run_dir) == "resnet8_digits_a_a0.1_b1.0_ctc_itrd"
    for name in ["ckpt_epoch_1.pth", "ckpt_epoch_2.pth", "resnet8_last.pth"]:
        assert os.path.isfile(os.path.join(run_dir, name)), name
    stage_one, stage_two = [json.loads(line) for line in open(os.path.join(run_dir, "log.txt"))]
    assert "train_instance" in stage_one and "train_itrd" not in stage_one
    assert math.isfinite(stage_two["train_itrd"]) and "train_instance" not in stage_two
    resume = load(run_dir, "resume.pth")
    assert resume["state"]["criterion"]["embed.weight"].shape == (64, 64)   # resnet8 -> its own snapshot
    snapshot = load(run_dir, "ckpt_epoch_1.pth")["model"]
    for key, value in resume["state"]["frozen"].items():                  # T1 = the weights at the switch
        assert torch.equal(value, snapshot[key]), key


def test_itrd_distillation_from_an_external_teacher_of_another_architecture(in_tmp):
    teacher_run = train_vanilla.main(train_vanilla.get_args_parser().parse_args(
        ["--dataset", "digits_a", "--model", "mobile_half", "--epochs", "1",
         "--num_workers", "0", "--no_progress", "--note", "teacher"]))
    teacher = os.path.join(teacher_run.run_dir, "mobile_half_last.pth")
    run_dir = run(["--teacher", teacher, "--stage_two_epoch", "0", "--epochs", "1", "--stage_two_loss", "itrd",
                   "-b", "1.0", "--kd_weight", "0.9", "--ce_weight", "0.1", "--lr_decay_epochs", "1"]).run_dir
    assert os.path.basename(run_dir) == "resnet8_digits_a_Tmobile_half_itrd_b1.0_kd0.9_test"
    resume = load(run_dir, "resume.pth")
    assert resume["state"]["criterion"]["embed.weight"].shape == (1280, 64)  # resnet8: 64 -> mobile_half: 1280
    teacher_weights = load_checkpoint(teacher)["model"]
    for key, value in resume["state"]["frozen"].items():  # the teacher stays frozen
        assert torch.equal(value, teacher_weights[key]), key
    log = json.loads(open(os.path.join(run_dir, "log.txt")).readline())
    assert {"train_itrd", "train_kd", "train_ce"} <= set(log) and "train_instance" not in log
    assert all(math.isfinite(log[k]) for k in ["train_loss", "train_itrd", "train_kd"])
    assert load(run_dir, "resnet8_last.pth")["epoch"] == 1


def test_kd_with_a_teacher_of_other_classes_is_refused(in_tmp, capsys):
    path = str(in_tmp / "seven.pth")
    save_atomic(model_checkpoint(create_model("resnet8", 7), 0, None, "resnet8", "other"), path)
    err = run_cli_error(["--teacher", path, "--stage_two_epoch", "0", "--epochs", "1", "--kd_weight", "0.5"],
                        capsys)
    assert "7 classes" in err and "5" in err and "--kd_weight" in err
    assert not os.path.exists("save")
    save_atomic(model_checkpoint(create_model("resnet8", 5), 0, None, "resnet8", "digits_b"), path)  # 5 others
    err = run_cli_error(["--teacher", path, "--stage_two_epoch", "0", "--epochs", "1", "--kd_weight", "0.5"],
                        capsys)
    assert "digits_b" in err and "digits_a" in err and "same count is not enough" in err
    assert not os.path.exists("save")


@pytest.mark.parametrize("argv, expected", [
    (["--epochs", "3", "--stage_two_epoch", "3"], "--stage_two_epoch must lie in [0, --epochs)"),
    (["--epochs", "3", "--stage_two_epoch", "0"], "--teacher"),
    (["--epochs", "3", "--stage_two_epoch", "1", "--nce_k", "600"], "--nce_k 600 is too large"),
])
def test_bad_settings_are_refused_before_training(argv, expected, in_tmp, capsys):
    assert expected in run_cli_error(argv, capsys)
    assert not os.path.exists("save")


def test_nan_loss_stops_naming_epoch_and_step(in_tmp, monkeypatch, capsys):
    calls = {"n": 0}
    original = CRDLoss.forward

    def nan_on_third_step(self, *args, **kw):
        calls["n"] += 1
        loss = original(self, *args, **kw)
        return loss * float("nan") if calls["n"] == 3 else loss
    monkeypatch.setattr(CRDLoss, "forward", nan_on_third_step)
    err = run_cli_error(["--epochs", "2", "--stage_two_epoch", "1"], capsys)
    assert "epoch 2, step 3" in err
    last_good = os.path.join("save", "model", "resnet8_digits_a_a0.1_b1.0_test", "ckpt_epoch_1.pth")
    assert last_good in err and load_checkpoint(last_good)["epoch"] == 1
    assert not os.path.exists(os.path.join(os.path.dirname(last_good), "ckpt_epoch_2.pth"))


def test_two_stage_run_on_the_device_resident_loader(in_tmp):
    """--loader gpu serves the instance view in stage 1 and the contrast view (with negatives) in stage 2."""
    result = run(TWO_STAGE + ["--loader", "gpu", "--epochs", "2"])
    assert result.flags["loader"] == "gpu"
    log = [json.loads(line) for line in open(os.path.join(result.run_dir, "log.txt"))]
    assert "train_instance" in log[0] and "train_crd" in log[1]
    assert all(math.isfinite(r["train_loss"]) for r in log)


def test_stage_one_device_copy_is_released_at_the_switch():
    """--loader gpu: stage 2 uploads its contrast view; stage 1's copy must not stay on the device beside it."""
    import gc
    import weakref

    from dataset import get_dataset
    from helper.train.ctc import CTCData
    args = parse(TWO_STAGE + ["--loader", "gpu"])
    data = CTCData(ctc_config(args), loader_config(args),
                   get_dataset("digits_a", "train", variant="instance", augment="standard"), torch.device("cpu"))
    stage_one = weakref.ref(data.loader_for(1))
    assert data.loader_for(1) is stage_one()                    # built once per stage
    stage_two = data.loader_for(2)
    gc.collect()
    assert stage_one() is None and stage_two.sampler is not None  # gone; stage 2 draws negatives


def test_switch_state_of_older_resume_files_is_inferred_from_the_epoch():
    from helper.train.ctc import SwitchState
    switch = SwitchState(stage_two_epoch=2)
    switch.infer_state(2)          # saved after the last stage-1 epoch: the switch is still to come
    assert not switch.done
    switch.infer_state(3)
    assert switch.done and switch.state_dict() == {"done": True}
