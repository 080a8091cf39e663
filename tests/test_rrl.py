"""Rich representations on the digits pair: CAT's three protocols over snapshots and over runs, DISTILLn,
and mismatched members."""
import json
import os
import pytest
import torch

import distill_cat
import transfer
from helper.sweep import rrl
from helper.sweep import transfer as T
from helper.core.checkpoint import load_checkpoint, save_atomic
from models import load_model
from helper.core.errors import UserError
from models import create_model
from tests.helpers import cli, copy_run, dry_run, read_rows


@pytest.fixture
def fresh(digits_run, tmp_path):
    return copy_run(digits_run, tmp_path / "run")


def cat(run_dir, capsys, *extra, epochs="1"):
    """transfer.py digits_a -> digits_b on a concatenation; tiny fine-tuning and probe."""
    argv = ["--ckpt_path", run_dir, "--source_dataset", "digits_a", "--target_dataset", "digits_b",
            "--model", "resnet8", "--epoch", epochs, "--batch", "128", "--num_workers", "0", "--no_progress",
            *extra]
    return cli(transfer.main, transfer.get_args_parser(), argv, capsys)


def test_init_cat_trains_every_member_and_equals_a_hand_built_concatenation():
    torch.manual_seed(0)
    members = [create_model("resnet8", num_classes=5), create_model("resnet14", num_classes=3)]
    net = rrl.ConcatNet(members, num_classes=4).eval()
    images = torch.randn(6, 3, 32, 32)
    features = torch.cat([members[0].penultimate(images), members[1].penultimate(images)], dim=1)
    assert net.feat_dim == 64 + 64 and features.shape == (6, 128)
    torch.testing.assert_close(net(images), features @ net.fc.weight.T + net.fc.bias)
    net.train()
    torch.nn.functional.cross_entropy(net(images), torch.tensor([0, 1, 2, 3, 0, 1])).backward()
    for member in members:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in member.parameters()
                   if p is not member.head.weight and p is not member.head.bias)
        assert member.head.weight.grad is None          # source heads take no part


def test_init_cat_protocol_moves_every_member_and_shares_the_concat_file(fresh, capsys, monkeypatch):
    moved = {}
    original = rrl.finetune

    def spy(model, *a, **kw):
        before = {name: p.detach().clone() for name, p in model.members.named_parameters()}
        out = original(model, *a, **kw)
        moved.update({name: not torch.equal(before[name], p) for name, p in model.members.named_parameters()})
        return out
    monkeypatch.setattr(rrl, "finetune", spy)
    concat_csv = os.path.join(fresh, "transfer_digits_b_concat.csv")
    with open(concat_csv, "w") as f:      # a linear probe's row, written before the protocol column existed
        f.write("epochs,paths,feat_size,final_acc,best_acc_on_eval,best_epoch,seconds\n1;2,a;b,128,50,60,1,3.0\n"
                "1;3,a;c,128,5")          # and a row cut short by a kill: dropped, not upgraded into a whole row
    code, out, err = cat(fresh, capsys, "--concat", "1,3", "--mode", "finetune")
    assert code == 0 and "finetune, feature size 128" in out and "dropped its incomplete last line" in err
    old, row = read_rows(concat_csv)
    assert old["protocol"] == "linear" and old["final_acc"] == "50" and old["epochs"] == "1;2"
    assert row["protocol"] == "finetune" and row["epochs"] == "1;3" and 0 <= float(row["final_acc"]) <= 100
    for member in ("0.", "1."):                  # every convolution of both members was trained
        convs = [changed for name, changed in moved.items() if name.startswith(member) and "conv" in name]
        assert convs and all(convs)


def test_two_stage_fine_tunes_each_member_once_and_probes_the_fine_tuned_weights(fresh, digits_run, tmp_path,
                                                                                  capsys, monkeypatch):
    other = copy_run(digits_run, tmp_path / "other_run")          # a second run: members by path
    other_ckpt = os.path.join(other, "ckpt_epoch_2.pth")
    tuned = []
    original_finetune = T.finetune
    for module in (T, rrl):                 # a sweep's fine-tuning (transfer.py --mode finetune) and two_stage's
        monkeypatch.setattr(module, "finetune",
                            lambda model, *a, **kw: tuned.append(model) or original_finetune(model, *a, **kw))
    probed = []
    original_probe = rrl.concat_probe
    monkeypatch.setattr(rrl, "concat_probe", lambda members, *a, **kw: probed.append(members) or original_probe(members, *a, **kw))
    monkeypatch.setitem(rrl.PROTOCOLS, "linear", rrl.concat_probe)

    # Epoch 3 fine-tuned by a sweep with --save_finetuned: two_stage's first stage reuses it.
    code, _, _ = cat(fresh, capsys, "--mode", "finetune", "--save_finetuned", "--start_epoch", "3")
    assert code == 0 and len(tuned) == 1
    code, out, _ = cat(fresh, capsys, "--concat", "3", "--concat_paths", other_ckpt, "--mode", "two_stage")
    assert code == 0 and len(tuned) == 2 and "member 3 reused" in out and out.count("fine-tuned:") == 1
    ft_own = os.path.join(fresh, "finetuned_digits_b", "ckpt_epoch_3.pth")
    ft_other = os.path.join(other, "finetuned_digits_b", "ckpt_epoch_2.pth")
    assert [p for p, _ in probed[-1]] == [ft_own, ft_other]          # the probe reads the fine-tuned files
    source = load_checkpoint(os.path.join(fresh, "ckpt_epoch_3.pth"))["model"]
    tuned_state = load_checkpoint(ft_own)["model"]
    assert not torch.equal(source["conv1.weight"], tuned_state["conv1.weight"])
    torch.testing.assert_close(tuned_state["conv1.weight"], tuned[0].conv1.weight.detach().cpu())
    (row,) = read_rows(os.path.join(fresh, "transfer_digits_b_concat.csv"))
    assert row["protocol"] == "two_stage" and len(row["members_acc"].split(";")) == 2

    # A rerun fine-tunes nothing and adds no row; adding a member fine-tunes only that member.
    tuned.clear()
    code, out, _ = cat(fresh, capsys, "--concat", "3", "--concat_paths", other_ckpt, "--mode", "two_stage")
    assert code == 0 and not tuned and "already in" in out
    code, out, _ = cat(fresh, capsys, "--concat", "1,3", "--concat_paths", other_ckpt, "--mode", "two_stage")
    assert code == 0 and len(tuned) == 1 and out.count("reused:") == 2
    assert [r["epochs"].count(";") for r in read_rows(os.path.join(fresh, "transfer_digits_b_concat.csv"))] == [1, 2]

    # Other fine-tuning flags: the saved member is refused, not silently mixed in; --force redoes it.
    code, _, err = cat(fresh, capsys, "--concat", "1,3", "--mode", "two_stage", "--lr", "0.02")
    assert code == 2 and "--lr was 0.01, now 0.02" in " ".join(err.split())


def test_mismatched_members_are_refused(fresh, capsys, tmp_path):
    code, _, err = cat(fresh, capsys, "--concat", "1", "--concat_paths", os.path.join(fresh, "ckpt_epoch_1.pth"))
    assert code == 2 and "twice" in err
    code, _, err = cat(fresh, capsys, "--concat", "2")
    assert code == 2 and "at least two" in err
    code, _, err = cat(fresh, capsys, "--mode", "two_stage")
    assert code == 2 and "--concat" in err
    other = str(tmp_path / "resnet14.pth")                            # another architecture: taken as recorded
    ckpt = load_checkpoint(os.path.join(fresh, "ckpt_epoch_1.pth"))
    save_atomic({**ckpt, "arch": "resnet14", "model": create_model("resnet14", 5).state_dict()}, other)
    assert cat(fresh, capsys, "--concat", "1", "--concat_paths", other)[0] == 0
    assert read_rows(os.path.join(fresh, "transfer_digits_b_concat.csv"))[0]["feat_size"] == "128"
    bad = str(tmp_path / "mislabelled.pth")                           # records resnet14, holds resnet8 weights
    save_atomic({**ckpt, "arch": "resnet14"}, bad)
    code, _, err = cat(fresh, capsys, "--concat", "1", "--concat_paths", bad)
    assert code == 2 and "mislabelled.pth" in err and "Traceback" not in err


def test_members_that_cannot_take_the_target_images_are_refused(monkeypatch):
    members = [create_model("resnet8", 5), create_model("resnet8", 5)]

    def wrong_input(x):
        raise RuntimeError("expected input[2, 3, 32, 32] to have 1 channels")
    monkeypatch.setattr(members[1], "penultimate", wrong_input)
    dataset = [(torch.zeros(3, 32, 32), 0)] * 2

    class Named(list):
        info = type("Info", (), {"name": "digits_b"})
    with pytest.raises(UserError, match="member b cannot take digits_b's images"):
        rrl.check_inputs(members, ["a", "b"], Named(dataset))


def distill(tmp_path, capsys, teachers, *extra):
    argv = ["--dataset", "digits_a", "--model", "resnet8", "--teachers", ",".join(teachers), "--epochs", "2",
            "--save_freq", "1", "--batch_size", "64", "--num_workers", "0", "--no_progress", "--note", "t",
            "--model_path", str(tmp_path / "model"), "--tb_path", str(tmp_path / "tb"), *extra]
    return cli(distill_cat.main, distill_cat.get_args_parser(), argv, capsys)


def test_distill_reduces_its_loss_and_its_checkpoints_transfer(digits_run, tmp_path, capsys):
    teachers = [os.path.join(digits_run, "ckpt_epoch_1.pth"), os.path.join(digits_run, "ckpt_epoch_3.pth")]
    code, _, _ = distill(tmp_path, capsys, teachers)
    assert hasattr(code, "run_dir")                              # main returns its TrainingRun: no error
    (run_dir,) = [os.path.join(tmp_path, "model", d) for d in os.listdir(tmp_path / "model")]
    with open(os.path.join(run_dir, "log.txt")) as f:
        log = [json.loads(line) for line in f]
    assert log[-1]["train_distill"] < log[0]["train_distill"]
    model, ckpt = load_model(os.path.join(run_dir, "ckpt_epoch_2.pth"))
    assert ckpt["arch"] == "resnet8" and set(ckpt["model"]) == set(create_model("resnet8", 5).state_dict())
    code, out, _ = cli(transfer.main, transfer.get_args_parser(),
                       ["--ckpt_path", run_dir, "--source_dataset", "digits_a", "--target_dataset", "digits_b",
                        "--model", "resnet8", "--start_epoch", "2", "--epoch", "2", "--num_workers", "0",
                        "--no_progress"], capsys)
    assert code == 0 and "Source Epoch: 2, Target Acc: " in out


def test_distill_refuses_teachers_of_other_classes(digits_run, tmp_path, capsys):
    foreign = str(tmp_path / "foreign.pth")
    ckpt = load_checkpoint(os.path.join(digits_run, "ckpt_epoch_1.pth"))
    save_atomic({**ckpt, "dataset": "cifar10", "num_classes": 10,
                 "model": create_model("resnet8", 10).state_dict()}, foreign)
    code, _, err = distill(tmp_path, capsys, [os.path.join(digits_run, "ckpt_epoch_1.pth"), foreign])
    assert code == 2 and "foreign.pth" in err and "cifar10" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "model")


def test_rrl_cifar_pipeline_runs_every_protocol_once(tmp_path):
    calls = dry_run("rrl_cifar.sh", tmp_path, EPOCHS="4")
    training = [c for c in calls if c.startswith("train_vanilla.py")]
    assert [c.split("--seed ")[1].split()[0] for c in training] == ["0", "1", "2", "3"]
    assert all("--resume" in c and "--dataset cifar100" in c and "--model resnet56" in c for c in training)
    concat = [c for c in calls if "--concat_paths" in c]
    assert [(c.split("--mode ")[1].split()[0], c.count(".pth")) for c in concat] == \
        [("linear", 2), ("finetune", 2), ("two_stage", 2), ("linear", 4), ("finetune", 4), ("two_stage", 4)]
    assert all("--target_dataset cifar10 " in c and "trial_0_rrl/ckpt_epoch_4.pth" in c for c in concat)
    distill = [c for c in calls if c.startswith("distill_cat.py")]
    assert [c.split("--teachers ")[1].split()[0].count(",") for c in distill] == [1, 3]
    singles = [c for c in calls if c.startswith("transfer.py") and "--concat_paths" not in c]
    assert len(singles) == 2 * (4 + 2) and any("distill4_lr_0.05_trial_0_rrl" in c for c in singles)


def test_docs_commands_parse_to_their_protocols():
    import shlex
    from tests.conftest import REPO_ROOT
    with open(os.path.join(REPO_ROOT, "docs", "rrl.md")) as f:
        block = f.read().split("## The commands")[1].split("```")[1]
    commands = [shlex.split(line.split("#")[0])[1:] for line in block.splitlines() if line.startswith("python ")]
    modes = [transfer.get_args_parser().parse_args(argv[1:]).mode for argv in commands if argv[0] == "transfer.py"]
    assert modes == ["linear", "finetune", "two_stage"]
    (distill_argv,) = [argv[1:] for argv in commands if argv[0] == "distill_cat.py"]
    assert distill_cat.get_args_parser().parse_args(distill_argv).teachers.count(",") == 1
