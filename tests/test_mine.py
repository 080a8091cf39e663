"""mine.py on a tiny digits_a run (resnet8, 2 epochs): CSV rows and the original line, resume and
--force, X built once per invocation, float --iter_num, seeding, --layer, modes xy and --holdout,
and bad input."""
import os

import numpy as np
import pytest
import torch

import discriminability
import mine
from helper.core.checkpoint import ckpt_name, model_checkpoint, save_atomic
from models import create_model
from tests.helpers import cli, copy_run, needs_compiler, read_rows as rows

TINY = ["--batch_size", "128", "--hidden_size", "32", "--iter_num", "20", "--window", "5"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A resnet8 digits_a run folder with ckpt_epoch_1..2.pth, written as train_vanilla.py writes them.

    The weights are seeded random inits rather than trained ones: MI values are not asserted,
    and skipping training keeps this module within its time budget on a shared 2-core CPU.
    """
    root = tmp_path_factory.mktemp("mine_run")
    for epoch in (1, 2):
        torch.manual_seed(epoch)
        model = create_model("resnet8", num_classes=5)
        save_atomic(model_checkpoint(model, epoch, 20.0, "resnet8", "digits_a"), str(root / ckpt_name(epoch)))
    return str(root)


@pytest.fixture
def fresh(run, tmp_path):
    return copy_run(run, tmp_path / "run")


def mi(run_dir, capsys, mode, *extra):
    """(exit status, stdout, stderr) of one mine.py call on the run's epochs 1 and 2."""
    argv = ["--mode", mode, "--dataset", "digits_a", "--ckpt_path", run_dir, "--start_epoch", "1", "--skip", "1",
            "--num_workers", "0", "--no_progress", *TINY, *extra]
    return cli(mine.main, mine.get_args_parser(), argv, capsys)


def spy(monkeypatch, name):
    """Wrap mine.<name>; return the list of (args, kwargs) of its calls."""
    calls, original = [], getattr(mine, name)

    def wrapper(*a, **kw):
        calls.append((a, kw))
        return original(*a, **kw)
    monkeypatch.setattr(mine, name, wrapper)
    return calls


def test_xt_sweep_writes_rows_resumes_and_force_recomputes(fresh, capsys, monkeypatch):
    fits, tables = spy(monkeypatch, "estimate_mi"), spy(monkeypatch, "image_table")
    extracted = spy(monkeypatch, "split_features")
    code, out, _ = mi(fresh, capsys, "xt")
    assert code == 0
    assert "I(X;T) of resnet8 of 1-th epoch is : " in out and "I(X;T) of resnet8 of 2-th epoch is : " in out
    path = os.path.join(fresh, "mi_xt_digits_a.csv")
    first = rows(path)
    assert [r["epoch"] for r in first] == ["1", "2"]
    assert all(np.isfinite(float(r["mi"])) and r["iters"] == "20" and r["batch_size"] == "128" and r["nan_steps"] == "0"
               and r["estimator"] == "mine" and r["layer"] == "-1" and r["mi_train"] == "" for r in first)
    assert np.load(os.path.join(fresh, "mi_xt_digits_a_history", "epoch_2.npy")).shape == (20,)
    # X built once per invocation, T extracted per checkpoint.
    assert len(tables) == 1 and len(extracted) == 2 and len(fits) == 2
    (x, t, config, _), _ = fits[0]
    assert x.shape == (180, 3072) and t.shape == (180, 64)       # digits_a test split; resnet8 feat_dim 64
    assert config.hidden_size == 32 and config.window == 5 and config.seed == 0
    assert not torch.equal(fits[0][0][1], fits[1][0][1])        # each checkpoint's own T

    code, out, _ = mi(fresh, capsys, "xt")
    assert code == 0 and len(fits) == 2 and len(tables) == 1 and "2 checkpoints already in" in out
    assert rows(path) == first

    code, _, _ = mi(fresh, capsys, "xt", "--force", "--start_epoch", "2")
    again = rows(path)
    assert code == 0 and len(fits) == 3 and len(again) == 3
    assert again[2]["epoch"] == "2" and again[2]["mi"] == first[1]["mi"]       # seed 0 both times


def test_ty_sweep_uses_one_hot_labels(fresh, capsys, monkeypatch):
    fits, tables = spy(monkeypatch, "estimate_mi"), spy(monkeypatch, "image_table")
    code, out, _ = mi(fresh, capsys, "ty")
    assert code == 0 and "I(T;Y) of resnet8 of 2-th epoch is : " in out
    assert [r["epoch"] for r in rows(os.path.join(fresh, "mi_ty_digits_a.csv"))] == ["1", "2"]
    assert tables == []                                          # no image table for I(T;Y)
    (t, y, _, _), _ = fits[0]
    assert t.shape == (180, 64) and y.shape == (180, 5)
    assert torch.equal(y.sum(1), torch.ones(180)) and set(y.argmax(1).tolist()) == set(range(5))


@needs_compiler
def test_compile_and_channels_last_agree_within_noise(fresh, capsys):
    fit = ["--end_epoch", "1", "--iter_num", "200", "--lr", "3e-3", "--window", "20"]   # long enough to learn
    assert mi(fresh, capsys, "ty", *fit)[0] == 0
    code, _, err = mi(fresh, capsys, "ty", *fit, "--force", "--compile", "--channels_last")
    assert code == 0, err
    eager, fast = (float(row["mi"]) for row in rows(os.path.join(fresh, "mi_ty_digits_a.csv")))
    # Float reordering compounds over 200 Adam steps: 2 % on an AVX-512 CPU, 15 % on an AVX2 one (0.508 eager,
    # 0.430 compiled + channels_last); another seed moves this estimate by ~60 %. A broken fast path (a critic
    # that learns nothing, or garbage features) lands far outside this band.
    assert eager > 0.05 and abs(fast - eager) < 0.35 * eager


def test_float_iter_num_and_seed(fresh, capsys):
    parse = mine.get_args_parser().parse_args
    base = ["--mode", "xt", "--dataset", "cifar100", "--ckpt_path", "x"]
    assert parse(base + ["--iter_num", "1e+2"]).iter_num == 100
    assert parse(base + ["--iter_num", "2e+4"]).iter_num == 20000
    code, _, err = mi(fresh, capsys, "ty", "--iter_num", "1.5")
    assert code == 2 and "whole number" in err

    fits = []
    for seed in ("0", "0", "1"):   # --force with another --seed starts the file anew (the old one kept as .bak)
        code, _, _ = mi(fresh, capsys, "ty", "--iter_num", "2e+1", "--start_epoch", "2", "--force", "--seed", seed)
        assert code == 0
        fits.append(rows(os.path.join(fresh, "mi_ty_digits_a.csv"))[-1])
    one, same, other = fits
    assert one["iters"] == "20"
    assert (one["mi"], one["std"]) == (same["mi"], same["std"]) and other["mi"] != one["mi"]


def test_layer_picks_an_earlier_stage(fresh, capsys, monkeypatch):
    fits = spy(monkeypatch, "estimate_mi")
    code, _, _ = mi(fresh, capsys, "ty", "--layer", "1", "--start_epoch", "2")
    assert code == 0
    t = fits[0][0][0]
    assert t.shape[0] == 180 and t.shape[1] > 64                # a flattened feature map, not the pooled 64
    (row,) = rows(os.path.join(fresh, "mi_ty_digits_a_layer1.csv"))
    assert row["layer"] == "1"
    assert not os.path.exists(os.path.join(fresh, "mi_ty_digits_a.csv"))
    code, _, err = mi(fresh, capsys, "ty", "--layer", "99", "--start_epoch", "2")
    assert code == 2 and "layer 99" in err.replace("\n", " ")


def test_xy_fits_once_and_holdout_writes_mi_train(fresh, capsys, monkeypatch):
    fits = spy(monkeypatch, "estimate_mi")
    extracted = spy(monkeypatch, "split_features")
    code, out, _ = mi(fresh, capsys, "xy")
    assert code == 0 and len(fits) == 1 and extracted == []
    assert "I(X;Y) of resnet8 of 1-th epoch is : " in out and "I(X;Y) of resnet8 of 2-th epoch is : " in out
    xy = rows(os.path.join(fresh, "mi_xy_digits_a.csv"))
    assert [r["epoch"] for r in xy] == ["1", "2"] and xy[0]["mi"] == xy[1]["mi"] and xy[0]["layer"] == ""

    code, out, err = mi(fresh, capsys, "ty", "--holdout", "0.5", "--start_epoch", "2")
    assert code == 0
    (row,) = rows(os.path.join(fresh, "mi_ty_digits_a_holdout.csv"))
    assert np.isfinite(float(row["mi_train"])) and np.isfinite(float(row["mi"]))
    assert int(row["best_step"]) in (0, 20)                      # evaluated before the first step and at the end
    assert row["batch_size"] == "90"                             # clamped to the 90 fitting rows, and said so once
    assert err.count("--batch_size 128 exceeds the 90 rows to fit on") == 1
    assert "held-out bound" in out and f"critic of step {row['best_step']}" in out
    curve = np.load(os.path.join(fresh, "mi_ty_digits_a_holdout_history", "epoch_2_holdout.npy"))
    assert curve.shape == (2, 2) and list(curve[:, 0]) == [0, 20]


def test_nan_steps_are_reported(fresh, capsys, monkeypatch):
    def fake(a, b, config, device):
        return {"mi": 0.5, "std": 0.1, "history": np.zeros(config.iters), "nan_steps": 3, "iters": config.iters,
                "seconds": 0.0, "estimator": "mine", "batch_size": 128}
    monkeypatch.setattr(mine, "estimate_mi", fake)
    code, _, err = mi(fresh, capsys, "ty", "--start_epoch", "2")
    assert code == 0 and "3 of 20 updates" in err
    assert rows(os.path.join(fresh, "mi_ty_digits_a.csv"))[0]["nan_steps"] == "3"


def test_short_fit_near_zero_is_warned(fresh, capsys, monkeypatch):
    estimate = {"mi": 0.002}

    def fake(a, b, config, device):
        return {"mi": estimate["mi"], "std": 0.1, "history": np.zeros(config.iters), "nan_steps": 0,
                "iters": config.iters, "seconds": 0.0, "estimator": "mine", "batch_size": 128}
    monkeypatch.setattr(mine, "estimate_mi", fake)
    code, _, err = mi(fresh, capsys, "ty", "--start_epoch", "2")
    assert code == 0 and "~0 nats after only 20 iterations" in err
    estimate["mi"] = 0.3
    code, _, err = mi(fresh, capsys, "ty", "--start_epoch", "2", "--force")
    assert code == 0 and "~0 nats" not in err
    estimate["mi"] = 0.002
    code, _, err = mi(fresh, capsys, "ty", "--start_epoch", "2", "--force", "--iter_num", "1000")
    assert code == 0 and "~0 nats" not in err


@pytest.mark.parametrize("flags, window", [
    ([], 500), (["--iter_num", "300"], 300), (["--iter_num", "1e+4"], 500), (["--iter_num", "300", "--window", "50"], 50),
])
def test_window_defaults_to_the_last_500_iterations_or_the_whole_shorter_fit(flags, window):
    args = mine.get_args_parser().parse_args(["--ckpt_path", "run", "--mode", "xt", "--dataset", "digits_a"] + flags)
    mine.check_args(args)
    assert mine.fit_window(args) == window


@pytest.mark.parametrize("flags, message", [
    (["--window", "21"], "--window 21 is longer than the fit"),
    (["--ma_rate", "-1"], "--ma_rate"), (["--ma_rate", "0"], "--ma_rate"), (["--ma_rate", "1.5"], "--ma_rate"),
    (["--ma_rate", "nan"], "--ma_rate"), (["--lr", "nan"], "--lr"), (["--lr", "inf"], "--lr"),
    (["--holdout", "nan"], "--holdout"),
    (["--hidden_size", "100000000"], "needs about"),
])
def test_flags_out_of_range_exit_2(fresh, capsys, flags, message):
    code, _, err = mi(fresh, capsys, "ty", "--start_epoch", "2", *flags)
    assert code == 2 and message in err.replace("\n", " ") and "Traceback" not in err
    assert not os.path.exists(os.path.join(fresh, "mi_ty_digits_a.csv"))


def test_bad_input_exits_2(fresh, capsys, monkeypatch):
    fits = spy(monkeypatch, "estimate_mi")
    code, _, err = mi(fresh, capsys, "ty", "--dataset", "imagenet")
    assert code == 2 and "imagenet" in err
    code, _, err = mi(fresh, capsys, "ty", "--model", "resnet14")
    assert code == 2 and "resnet8" in err and "resnet14" in err

    # An original-style checkpoint: weights only, no metadata.
    path = os.path.join(fresh, "ckpt_epoch_2.pth")
    torch.save({"model": torch.load(path, weights_only=True)["model"]}, path)
    assert fits == []
    code, out, _ = mi(fresh, capsys, "ty", "--model", "resnet8", "--start_epoch", "2", "--force")
    assert code == 0 and "I(T;Y) of resnet8 of 2-th epoch is : " in out   # classes read from the head
    code, out, _ = mi(fresh, capsys, "ty", "--model", "resnet8", "--start_epoch", "2", "--force",
                      "--source_dataset", "digits_b")
    assert code == 0 and "I(T;Y) of resnet8 of 2-th epoch is : " in out
    code, _, err = mi(fresh, capsys, "ty", "--start_epoch", "2")           # no metadata and no --model
    assert code == 2 and "--model" in err and "Traceback" not in err


def test_mine_keeps_its_own_defaults_and_help_of_the_shared_flags():
    base = ["--mode", "xt", "--dataset", "digits_a", "--ckpt_path", "x"]
    assert mine.get_args_parser().parse_args(base).extract_batch == 512
    assert discriminability.get_args_parser().parse_args(["--ckpt_path", "x"]).extract_batch == 256
    text = " ".join(mine.get_args_parser().format_help().split())
    assert "batch size of feature extraction (default 512)" in text
    assert "seed of the statistics network's init and of the batch draws" in text
    assert "fp32 throughout, as in the paper (the default)" in text
    other = " ".join(discriminability.get_args_parser().format_help().split())
    assert "(default 256)" in other and "seed of the probe head" in other and "statistics network's init" not in other
