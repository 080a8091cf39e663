"""transfer.py on a tiny digits_a run (resnet8): probe learns, gaps, corrupt files, resume, shards,
fine-tuning, concatenation and bad input."""
import json
import os

import pytest

import transfer
from helper.sweep import transfer as T
from models import load_model
from tests.conftest import DIGITS_RUN_EPOCHS as RUN_EPOCHS
from tests.helpers import cli, copy_run, read_rows

@pytest.fixture(scope="module")
def run(digits_run):
    return digits_run


@pytest.fixture
def fresh(run, tmp_path):
    return copy_run(run, tmp_path / "run")


def sweep(run_dir, capsys, *extra, probe_epochs="10"):
    """transfer.py digits_a -> digits_b over epochs 1..3; features cached beside the run copy."""
    argv = ["--ckpt_path", run_dir, "--cache_dir", os.path.join(run_dir, "features"),
            "--source_dataset", "digits_a", "--target_dataset", "digits_b",
            "--model", "resnet8", "--start_epoch", "1", "--skip", "1", "--epoch", probe_epochs,
            "--num_workers", "0", "--no_progress", *extra]
    return cli(transfer.main, transfer.get_args_parser(), argv, capsys)


def count_calls(monkeypatch, name="linear_probe"):
    calls = []
    original = getattr(T, name)

    def spy(model, path, *a, **kw):
        calls.append(os.path.basename(path))
        return original(model, path, *a, **kw)
    monkeypatch.setattr(T, name, spy)
    return calls


def test_probe_learns_resumes_and_force_recomputes(fresh, capsys, monkeypatch):
    code, out, _ = sweep(fresh, capsys)
    assert code == 0
    results = os.path.join(fresh, "transfer_digits_b_linear.csv")
    rows = read_rows(results)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["final_acc"]) > 40.0          # 5 classes: chance is 20 %
    assert all(0 <= float(r["best_acc_on_eval"]) <= 100 and float(r["best_acc_on_eval"]) >= float(r["final_acc"])
               for r in rows)
    assert "Source Epoch: 3, Target Acc: " in out
    assert os.path.isfile(os.path.join(fresh, "transfer_digits_b_linear.args.json"))
    assert len(os.listdir(os.path.join(fresh, "features"))) == 6   # 3 checkpoints x (train, test)

    # Interrupted after epoch 2: drop the last row; the rerun evaluates only epoch 3.
    with open(results) as f:
        lines = f.readlines()
    with open(results, "w") as f:
        f.writelines(lines[:-1])
    calls = count_calls(monkeypatch)
    code, out, _ = sweep(fresh, capsys)
    assert code == 0 and calls == ["ckpt_epoch_3.pth"]
    again = read_rows(results)
    assert [r["epoch"] for r in again] == ["1", "2", "3"]
    assert again[:2] == rows[:2]                        # untouched, seconds included
    assert again[2]["final_acc"] == rows[2]["final_acc"]  # seeded: the same accuracy

    calls.clear()
    code, _, _ = sweep(fresh, capsys, "--force")
    assert code == 0 and len(calls) == 3
    assert len(read_rows(results)) == 6


def test_rows_of_another_protocol_are_not_mixed_into_one_file(fresh, capsys):
    assert sweep(fresh, capsys, "--end_epoch", "1", probe_epochs="2")[0] == 0
    code, _, err = sweep(fresh, capsys, "--end_epoch", "2", probe_epochs="3")       # epoch 2 with 3 probe epochs?
    assert code == 2 and "--epoch was 2, now 3" in " ".join(err.split())
    assert [r["epoch"] for r in read_rows(os.path.join(fresh, "transfer_digits_b_linear.csv"))] == ["1"]
    assert sweep(fresh, capsys, "--end_epoch", "2", "--num_workers", "1", "--channels_last", "--loader", "gpu",
                 probe_epochs="2")[0] == 0                                                   # speed flags: free
    assert sweep(fresh, capsys, "--end_epoch", "2", "--force", probe_epochs="3")[0] == 0
    rows = read_rows(os.path.join(fresh, "transfer_digits_b_linear.csv"))
    assert [r["epoch"] for r in rows] == ["1", "2"]              # --force with a new protocol starts anew
    old = read_rows(os.path.join(fresh, "transfer_digits_b_linear.csv.bak"))
    assert [r["epoch"] for r in old] == ["1", "2"]               # ... keeping the old rows aside
    with open(os.path.join(fresh, "transfer_digits_b_linear.args.json")) as f:
        assert json.load(f)["epoch"] == 3


def test_missing_checkpoint_is_skipped_and_listed(fresh, capsys):
    os.remove(os.path.join(fresh, "ckpt_epoch_2.pth"))
    code, out, err = sweep(fresh, capsys, probe_epochs="2")
    assert code == 0
    assert [r["epoch"] for r in read_rows(os.path.join(fresh, "transfer_digits_b_linear.csv"))] == ["1", "3"]
    assert "missing checkpoints (skipped): epochs 2" in out
    assert "ckpt_epoch_2.pth is missing" in out + err


def test_corrupt_checkpoint_is_reported_and_sweep_goes_on(fresh, capsys):
    with open(os.path.join(fresh, "ckpt_epoch_1.pth"), "wb") as f:
        f.write(b"not a checkpoint" * 64)
    code, out, err = sweep(fresh, capsys, "--end_epoch", "2", probe_epochs="2")
    assert code == 1
    assert err.splitlines()[-1].endswith("1 checkpoint skipped, not computed: ckpt_epoch_1.pth (unreadable) "
                                         "(exit status 1)")
    assert [r["epoch"] for r in read_rows(os.path.join(fresh, "transfer_digits_b_linear.csv"))] == ["2"]


def test_bn_mode_train_probe_writes_its_own_file(fresh, capsys):
    code, out, _ = sweep(fresh, capsys, "--bn_mode", "train", "--start_epoch", "3", probe_epochs="1")
    assert code == 0 and "Source Epoch: 3, Target Acc: " in out
    (row,) = read_rows(os.path.join(fresh, "transfer_digits_b_linear_bntrain.csv"))
    assert 0 <= float(row["final_acc"]) <= 100
    assert not os.path.exists(os.path.join(fresh, "transfer_digits_b_linear.csv"))


def test_cv_probe_writes_fold_statistics_to_its_own_file(fresh, capsys):
    code, out, _ = sweep(fresh, capsys, "--cv", "3", "--start_epoch", "2", probe_epochs="3")
    assert code == 0 and "Source Epoch: 3, Target Acc: " in out
    rows = read_rows(os.path.join(fresh, "transfer_digits_b_linear_cv3.csv"))
    assert [r["epoch"] for r in rows] == ["2", "3"]
    for row in rows:
        assert 0 <= float(row["final_acc"]) <= 100 and float(row["final_acc_std"]) >= 0
        assert row["folds"] == "3" and float(row["final_acc_sem"]) == pytest.approx(
            float(row["final_acc_std"]) / 3 ** 0.5, rel=1e-4)
    with open(os.path.join(fresh, "transfer_digits_b_linear_cv3.args.json")) as f:
        assert json.load(f)["cv"] == 3
    assert not os.path.exists(os.path.join(fresh, "transfer_digits_b_linear.csv"))
    assert len(os.listdir(os.path.join(fresh, "features"))) == 4   # 2 checkpoints x (train, test), shared by folds
    code, _, err = sweep(fresh, capsys, "--cv", "1")
    assert code == 2 and "K >= 2" in err


def test_shards_together_equal_unsharded(fresh, capsys):
    assert sweep(fresh, capsys, probe_epochs="3")[0] == 0
    assert sweep(fresh, capsys, "--shard", "0/2", "--force", probe_epochs="3")[0] == 0
    assert sweep(fresh, capsys, "--shard", "1/2", "--force", probe_epochs="3")[0] == 0
    whole = read_rows(os.path.join(fresh, "transfer_digits_b_linear.csv"))
    shard0 = read_rows(os.path.join(fresh, "transfer_digits_b_linear.shard0of2.csv"))
    shard1 = read_rows(os.path.join(fresh, "transfer_digits_b_linear.shard1of2.csv"))
    assert [r["epoch"] for r in shard0] == ["1", "3"] and [r["epoch"] for r in shard1] == ["2"]
    merged = sorted(shard0 + shard1, key=lambda r: int(r["epoch"]))
    assert [(r["epoch"], r["final_acc"], r["best_acc_on_eval"]) for r in merged] == \
        [(r["epoch"], r["final_acc"], r["best_acc_on_eval"]) for r in whole]


def test_finetune_writes_param_transferability_and_weights(fresh, capsys):
    code, out, _ = sweep(fresh, capsys, "--mode", "finetune", "--start_epoch", "3", "--save_finetuned",
                         probe_epochs="1")
    assert code == 0
    (row,) = read_rows(os.path.join(fresh, "transfer_digits_b_finetune.csv"))
    assert row["epoch"] == "3" and 0 <= float(row["final_acc"]) <= 100
    assert float(row["param_transferability"]) > 0
    blocks = json.loads(row["param_transferability_blocks"])
    assert list(blocks) == ["conv1", "layer1.0", "layer2.0", "layer3.0"]     # resnet8: stem + 3 residual blocks
    assert float(row["param_transferability"]) == pytest.approx(sum(blocks.values()) / len(blocks), rel=1e-5)
    model, ckpt = load_model(os.path.join(fresh, "finetuned_digits_b", "ckpt_epoch_3.pth"))
    assert model.num_classes == 5 and ckpt["dataset"] == "digits_b" and ckpt["epoch"] == 3

    with open(os.path.join(fresh, "ckpt_epoch_0.pth"), "wb") as f:    # a corrupt init spoils no row
        f.write(b"not a checkpoint" * 64)
    code, _, err = sweep(fresh, capsys, "--mode", "finetune", "--start_epoch", "3", "--force", probe_epochs="1")
    assert code == 0 and "ckpt_epoch_0.pth" in err and "skipped, not computed" not in err
    last = read_rows(os.path.join(fresh, "transfer_digits_b_finetune.csv"))[-1]
    assert last["param_transferability"] == "" and last["param_transferability_blocks"] == ""

    os.remove(os.path.join(fresh, "ckpt_epoch_0.pth"))
    code, _, err = sweep(fresh, capsys, "--mode", "finetune", "--start_epoch", "3", "--force", probe_epochs="1")
    assert code == 0 and "ckpt_epoch_0.pth" in err and "missing" in err
    assert read_rows(os.path.join(fresh, "transfer_digits_b_finetune.csv"))[-1]["param_transferability"] == ""


def test_concat_doubles_feature_size(fresh, capsys):
    code, out, _ = sweep(fresh, capsys, "--concat", "1,3", probe_epochs="3")
    assert code == 0
    code, again, _ = sweep(fresh, capsys, "--concat", "1", "--concat_paths", os.path.join(fresh, "ckpt_epoch_3.pth"),
                           probe_epochs="3")
    assert code == 0 and "already in" in again               # the same two files: not probed twice
    code, _, _ = sweep(fresh, capsys, "--concat", "1", "--concat_paths", os.path.join(fresh, "ckpt_epoch_3.pth"),
                       "--force", probe_epochs="3")
    assert code == 0
    by_epochs, by_path = read_rows(os.path.join(fresh, "transfer_digits_b_concat.csv"))
    assert int(by_epochs["feat_size"]) == 2 * 64          # resnet8: feat_dim 64
    assert by_epochs["epochs"] == "1;3" and "feature size 128" in out
    assert by_path["final_acc"] == by_epochs["final_acc"]   # the same two checkpoints, named by path
    assert not os.path.exists(os.path.join(fresh, "transfer_digits_b_linear.csv"))
    code, again, _ = sweep(fresh, capsys, "--concat", "1,3", probe_epochs="3")        # a rerun adds no duplicate
    assert code == 0 and "already in" in again
    assert len(read_rows(os.path.join(fresh, "transfer_digits_b_concat.csv"))) == 2


def test_bad_input_exits_2(fresh, tmp_path, capsys):
    code, _, err = sweep(fresh, capsys, "--target_dataset", "imagenet")
    assert code == 2 and "imagenet" in err
    code, _, err = sweep(fresh, capsys, "--model", "resnet14")
    assert code == 2 and "resnet8" in err and "resnet14" in err
    empty = tmp_path / "no_data"
    empty.mkdir()
    code, _, err = sweep(fresh, capsys, "--target_dataset", "cinic10", "--data_folder", str(empty))
    assert code == 2 and "Traceback" not in err
    assert str(empty) in err.replace("\n", "")          # run_cli wraps lines (also at hyphens)
    code, _, err = cli(transfer.main, transfer.get_args_parser(),
                       ["--ckpt_path", str(empty), "--target_dataset", "digits_b", "--no_progress"], capsys)
    assert code == 2 and "no ckpt_epoch_<E>.pth" in err and not os.listdir(empty)
    code, _, err = sweep(fresh, capsys, "--start_epoch", "50")
    assert code == 2 and "selects no checkpoint" in err


@pytest.mark.parametrize("argv, lr, eval_split, name", [
    ([], 0.4, "valid", "transfer_cinic10_linear.csv"),
    (["--mode", "finetune", "--epochs", "100", "--batch_size", "18", "--wd", "1e-4"], 0.01, "valid",
     "transfer_cinic10_finetune.csv"),
    (["--target_dataset", "digits_b", "--cv", "5", "--seed", "3"], 0.4, "test", "transfer_digits_b_linear_cv5.csv"),
])
def test_flags_become_one_transfer_config_and_name_the_results_file(argv, lr, eval_split, name):
    from helper.sweep.results import KIND
    args = transfer.get_args_parser().parse_args(["--ckpt_path", "x", "--device", "cpu", *argv])
    transfer.check_args(args)
    flags, config = transfer.settled_flags(args, "cpu"), transfer.transfer_config(args, "cpu")
    assert (config.train.lr, config.eval_split, config.train.epochs, config.train.batch_size) == (
        lr, eval_split, args.epoch, args.batch)
    assert config.train.weight_decay == args.wd and config.train.seed == args.seed and config.cv == args.cv
    assert config.flags == vars(flags) and config.source.arch == "resnext32_16x4d"
    assert (flags.lr, flags.eval_split, args.lr, args.eval_split) == (lr, eval_split, None, None)  # args as parsed
    assert KIND["transfer"].file_name(config.flags) == name



def test_target_per_class_probes_the_first_images_of_each_class(fresh, capsys, monkeypatch):
    sizes = []
    original = T.linear_probe

    def spy(model, path, target, *a, **kw):
        sizes.append((len(target["train"]), len(target["eval"])))
        return original(model, path, target, *a, **kw)
    monkeypatch.setattr(T, "linear_probe", spy)
    code, _, _ = sweep(fresh, capsys, "--target_per_class", "20", "--cv", "3", "--start_epoch", "3",
                       probe_epochs="2")
    assert code == 0
    assert sizes == [(5 * 20, 179)]                    # digits_b: 5 classes; its test split kept whole
    with open(os.path.join(fresh, "transfer_digits_b_linear_cv3.args.json")) as f:
        assert json.load(f)["target_per_class"] == 20
    # Another subset is another protocol: refused against the rows already written, not mixed into them.
    code, _, err = sweep(fresh, capsys, "--target_per_class", "30", "--cv", "3", "--start_epoch", "2")
    assert code == 2 and "target_per_class" in err
    code, _, err = sweep(fresh, capsys, "--target_per_class", "1000", "--cv", "3", "--force")
    assert code == 2 and "--target_per_class 1000" in err and "smallest class" in err
