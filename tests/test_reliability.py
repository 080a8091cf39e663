"""What a hostile or unlucky user meets: bad flags, damaged and concurrent results files, kills and failed
writes during a run, a resume that cannot find its run. Each test reproduces one failure and checks the
promised behaviour (docs/run_folder.md)."""
import argparse
import errno
import hashlib
import json
import os
import shlex
import sys
import threading
import time

import pytest
import torch

import train_ctc
import train_vanilla
import transfer
import helper.train.engine as engine
from helper.core.checkpoint import load_checkpoint
from helper.core.errors import UserError
from helper.sweep.features import cache_path, cached_features
from helper.train.loops import NonFiniteLossError
from helper.cli.sweep import run_flags, sweep_args_parser, sweep_config
from helper.sweep.results import DamagedResultsError, ResultsCSV
from helper.sweep.runner import run_sweep, select_epochs
from tests.helpers import cli, read_rows

BASE = ["--dataset", "digits_a", "--model", "resnet8", "--batch_size", "128", "--num_workers", "0",
        "--no_progress", "--note", "rel", "--save_freq", "1"]


def train(argv, capsys):
    """(exit status, stdout, stderr) of train_vanilla.py with BASE + argv (main returns its run: status 0)."""
    code, out, err = cli(train_vanilla.main, train_vanilla.get_args_parser(), BASE + argv, capsys)
    return (code if isinstance(code, int) else 0), out, err


def one_paragraph(err):
    return " ".join(err.split())


# ------------------------------------------------------------------ flags
@pytest.mark.parametrize("parser, argv, flag", [
    (train_vanilla.get_args_parser, ["--num_workers", "-1"], "--num_workers"),
    (train_vanilla.get_args_parser, ["--momentum", "-1"], "--momentum"),
    (train_vanilla.get_args_parser, ["--momentum", "1"], "--momentum"),
    (train_vanilla.get_args_parser, ["--weight_decay", "-1"], "--weight_decay"),
    (train_vanilla.get_args_parser, ["--learning_rate", "nan"], "--learning_rate"),
    (train_vanilla.get_args_parser, ["--learning_rate", "inf"], "--learning_rate"),
    (train_vanilla.get_args_parser, ["--lr_decay_rate", "0"], "--lr_decay_rate"),
    (train_ctc.get_args_parser, ["--weight_decay", "nan"], "--weight_decay"),
    (transfer.get_args_parser, ["--ckpt_path", "x", "--num_workers", "-1"], "--num_workers"),
    (transfer.get_args_parser, ["--ckpt_path", "x", "--lr", "nan"], "--lr"),
    (transfer.get_args_parser, ["--ckpt_path", "x", "--wd", "-1"], "--wd"),
])
def test_out_of_range_flags_are_refused_where_parsed(parser, argv, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"argument {flag}" in err and "expected" in err and "Traceback" not in err


def test_in_range_flags_still_parse():
    args = train_vanilla.get_args_parser().parse_args(["--momentum", "0", "--weight_decay", "0", "--num_workers", "0"])
    assert (args.momentum, args.weight_decay, args.num_workers) == (0.0, 0.0, 0)




def test_end_epoch_before_start_epoch_says_so():
    with pytest.raises(UserError, match="--end_epoch 3 is before --start_epoch 5"):
        select_epochs({0: "a", 2: "b", 4: "c", 6: "d"}, 5, 1, 3)


# ------------------------------------------------------------------ results files
FIELDS = ["epoch", "acc", "seconds"]


def sweep_args(*argv):
    parser = argparse.ArgumentParser(parents=[sweep_args_parser()])
    parser.add_argument("--epoch", type=int, default=2, help="a protocol flag, as transfer.py's probe epochs")
    return parser.parse_args(["--ckpt_path", "unused", "--start_epoch", "1", "--skip", "1", "--no_progress", *argv])


@pytest.fixture
def run_dir(tmp_path):
    """A folder with empty ckpt_epoch_1..4.pth: the fake evaluation below never opens them."""
    for epoch in range(1, 5):
        (tmp_path / f"ckpt_epoch_{epoch}.pth").write_bytes(b"")
    return tmp_path


def fake_sweep(run_dir, *argv, calls=None, delay=0.0):
    """run_sweep over run_dir with an evaluation that records its epochs; returns the exit status."""
    def evaluate_one(epoch, path):
        if calls is not None:
            calls.append(epoch)
        time.sleep(delay)
        return {"acc": 10.0 * epoch, "seconds": delay}
    results = ResultsCSV(str(run_dir / "res.csv"), FIELDS)
    args = sweep_args(*argv)
    return run_sweep(sweep_config(args), run_flags(args), str(run_dir), results, evaluate_one)


def test_truncated_last_row_is_dropped_and_recomputed(run_dir, capsys):
    assert fake_sweep(run_dir, "--end_epoch", "2") == 0
    with open(run_dir / "res.csv", "a") as f:
        f.write("3,24.5")                                      # a row cut short by a kill
    rows = ResultsCSV(str(run_dir / "res.csv"), FIELDS).rows()
    assert [r["epoch"] for r in rows] == ["1", "2"] and "incomplete" in capsys.readouterr().err
    calls = []
    assert fake_sweep(run_dir, calls=calls) == 0
    assert calls == [3, 4] and "dropped its incomplete last line" in capsys.readouterr().err
    assert [(r["epoch"], r["acc"]) for r in read_rows(run_dir / "res.csv")] == [
        ("1", "10"), ("2", "20"), ("3", "30"), ("4", "40")]


def test_empty_results_file_gets_its_header(run_dir):
    (run_dir / "res.csv").write_text("")
    assert fake_sweep(run_dir, "--end_epoch", "1") == 0
    empty_file_sha1 = hashlib.sha1(b"").hexdigest()                # the fake checkpoints are empty files
    assert (run_dir / "res.csv").read_text().splitlines() == ["epoch,acc,seconds,checkpoint_sha1",
                                                               f"1,10,0,{empty_file_sha1}"]


def test_a_kill_while_appending_leaves_no_partial_row(run_dir, monkeypatch):
    assert fake_sweep(run_dir, "--end_epoch", "1") == 0
    before = (run_dir / "res.csv").read_bytes()
    real_write = os.write

    def killed_mid_write(fd, data):
        real_write(fd, data[:3])
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "write", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        ResultsCSV(str(run_dir / "res.csv"), FIELDS).append({"epoch": 2, "acc": 20.0})
    assert (run_dir / "res.csv").read_bytes() == before


def test_a_kill_while_creating_the_file_leaves_no_headerless_file(tmp_path, monkeypatch):
    import helper.core.checkpoint as C

    def killed(f):
        f.write(b"epoch,ac")
        raise KeyboardInterrupt
    real = C.atomic_write
    monkeypatch.setattr("helper.sweep.results.atomic_write", lambda path, write: real(path, killed))
    with pytest.raises(KeyboardInterrupt):
        ResultsCSV(str(tmp_path / "res.csv"), FIELDS).append({"epoch": 1, "acc": 1.0})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("text, line", [
    ("1,10,0\n2,20,0\n", 1),                                  # rows without a header
    ("epoch,acc,seconds\n1,10,0\n2,20\n3,30,0\n", 3),         # a row of the wrong length
    ("epoch,acc,seconds\n1,10,0\nx,20,0\n", 3),               # an epoch that is no number
])
def test_damaged_results_file_is_refused_by_name_and_line(run_dir, capsys, text, line):
    (run_dir / "res.csv").write_text(text)
    with pytest.raises(DamagedResultsError, match=rf"res.csv is damaged at line {line}:"):
        ResultsCSV(str(run_dir / "res.csv"), []).rows()         # as plot.py reads it
    with pytest.raises(DamagedResultsError):
        fake_sweep(run_dir)
    assert (run_dir / "res.csv").read_text() == text          # nothing appended
    assert fake_sweep(run_dir, "--force") == 0                # --force starts anew, keeping the old file
    assert (run_dir / "res.csv.bak").read_text() == text
    assert [r["epoch"] for r in read_rows(run_dir / "res.csv")] == ["1", "2", "3", "4"]


def test_missing_protocol_record_refuses_to_append_and_force_starts_anew(run_dir, capsys):
    assert fake_sweep(run_dir, "--end_epoch", "2", "--epoch", "2") == 0
    os.remove(run_dir / "res.args.json")
    calls = []
    with pytest.raises(UserError, match="res.args.json"):
        fake_sweep(run_dir, "--epoch", "7", calls=calls)
    assert calls == [] and len(read_rows(run_dir / "res.csv")) == 2
    assert fake_sweep(run_dir, "--epoch", "7", "--force", calls=calls) == 0
    assert calls == [1, 2, 3, 4] and len(read_rows(run_dir / "res.csv.bak")) == 2
    assert len(read_rows(run_dir / "res.csv")) == 4
    assert json.loads((run_dir / "res.args.json").read_text())["epoch"] == 7


def test_damaged_protocol_record_is_one_paragraph(run_dir, capsys):
    assert fake_sweep(run_dir, "--end_epoch", "1") == 0
    (run_dir / "res.args.json").write_text('{"epoch": 2, "se')

    def main(args):
        return fake_sweep(run_dir)
    code, _, err = cli(main, argparse.ArgumentParser(), [], capsys)
    assert code == 2 and "Traceback" not in err and "res.args.json is damaged" in one_paragraph(err)


def test_a_second_sweep_on_one_file_stops_or_waits_and_each_checkpoint_is_computed_once(run_dir):
    results = ResultsCSV(str(run_dir / "res.csv"), FIELDS)
    with results.lock():
        with pytest.raises(UserError, match=f"being written by another sweep \\(process {os.getpid()} "):
            fake_sweep(run_dir)
    assert not (run_dir / "res.csv").exists()
    calls, errors = [], []

    def sweep():
        try:
            fake_sweep(run_dir, "--wait", calls=calls, delay=0.05)
        except Exception as err:                               # pragma: no cover - reported below
            errors.append(err)
    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and sorted(calls) == [1, 2, 3, 4]
    assert [r["epoch"] for r in read_rows(run_dir / "res.csv")] == ["1", "2", "3", "4"]
    assert not (run_dir / "res.csv.lock").exists()


def test_shards_lock_their_own_files(run_dir):
    main, shard = ResultsCSV(str(run_dir / "res.csv"), FIELDS), ResultsCSV(str(run_dir / "res.csv"), FIELDS, (1, 2))
    with main.lock(), shard.lock():
        pass


def test_a_truncated_feature_cache_file_is_recomputed(tmp_path, capsys):
    key = {"checkpoint": "x", "split": "test"}
    compute = lambda: (torch.arange(6.0).reshape(3, 2), torch.tensor([0, 1, 2]))   # noqa: E731
    cached_features(str(tmp_path), key, compute)
    path = cache_path(str(tmp_path), key)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    features, labels = cached_features(str(tmp_path), key, compute)
    assert torch.equal(features, compute()[0]) and "damaged" in capsys.readouterr().err
    assert torch.equal(cached_features(str(tmp_path), key, lambda: 1 / 0)[1], labels)   # rewritten whole


# ------------------------------------------------------------------ training runs
def run_folder(lr="0.05"):
    return os.path.join(".", "save", "model", f"resnet8_digits_a_lr_{lr}_trial_0_rel")    # --model_path's default


def log_epochs(folder):
    return [json.loads(line).get("epoch") for line in open(os.path.join(folder, "log.txt"))]


def test_resume_of_a_finished_run_writes_its_missing_final_files(in_tmp, capsys):
    assert train(["--epochs", "2"], capsys)[0] == 0
    folder = run_folder()
    kept = {kind: load_checkpoint(os.path.join(folder, f"resnet8_{kind}.pth")) for kind in ("last", "best")}
    for kind in kept:
        os.remove(os.path.join(folder, f"resnet8_{kind}.pth"))
    code, out, _ = train(["--epochs", "2", "--resume"], capsys)
    assert code == 0 and "already finished" in out and "wrote the missing" in out
    for kind, before in kept.items():
        after = load_checkpoint(os.path.join(folder, f"resnet8_{kind}.pth"))
        assert after["epoch"] == before["epoch"] and after["accuracy"] == pytest.approx(before["accuracy"])
        assert all(torch.equal(after["model"][k], before["model"][k]) for k in before["model"])
    assert log_epochs(folder) == [1, 2]


def test_a_kill_during_a_save_leaves_no_temp_file_and_no_repeated_epoch(in_tmp, capsys, monkeypatch):
    real_save = torch.save

    def killed_while_saving_resume_of_epoch_1(obj, f, *a, **kw):
        if isinstance(obj, dict) and "optimizer" in obj and obj["epoch"] == 1:
            f.write(b"half a file")
            raise KeyboardInterrupt
        return real_save(obj, f, *a, **kw)
    monkeypatch.setattr(torch, "save", killed_while_saving_resume_of_epoch_1)
    assert train(["--epochs", "2"], capsys)[0] == 130                 # Ctrl-C: one line, exit 130
    monkeypatch.setattr(torch, "save", real_save)
    folder = run_folder()
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp_")]       # removed on failure
    assert log_epochs(folder) == [1]                       # epoch 1 logged, but resume.pth holds epoch 0
    (open(os.path.join(folder, ".tmp_k1ll3d.pth"), "wb")).write(b"what a kill -9 mid-save leaves")
    code, out, _ = train(["--epochs", "2", "--resume"], capsys)
    assert code == 0 and "removed .tmp_k1ll3d.pth" in out and "dropped 1 lines past epoch 0" in out
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp_")]
    assert log_epochs(folder) == [1, 2]


def test_read_only_run_folder_stops_before_any_epoch(in_tmp, capsys, monkeypatch):
    trained = []
    monkeypatch.setattr(engine, "train_one_epoch", lambda *a, **kw: trained.append(1))
    monkeypatch.setattr("helper.core.checkpoint.tempfile.mkstemp",
                        lambda *a, **kw: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")))
    code, _, err = train(["--epochs", "2"], capsys)
    text = one_paragraph(err)
    assert code == 2 and "Traceback" not in err and trained == []
    assert f"cannot write to {run_folder()} (Read-only file system)" in text and "nothing in the folder" in text


def test_full_disk_before_the_first_epoch_and_mid_run_keeps_everything(in_tmp, capsys, monkeypatch):
    real_save = torch.save
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", lambda *a, **kw: (_ for _ in ()).throw(full))
    code, _, err = train(["--epochs", "2"], capsys)
    assert code == 2 and "Traceback" not in err and "(No space left on device)" in err
    assert not os.path.exists(os.path.join(run_folder(), "log.txt"))          # no epoch ran

    def full_at_resume_of_epoch_2(obj, f, *a, **kw):
        if isinstance(obj, dict) and "optimizer" in obj and obj["epoch"] == 2:
            raise full
        return real_save(obj, f, *a, **kw)
    monkeypatch.setattr(torch, "save", full_at_resume_of_epoch_2)
    code, _, err = train(["--epochs", "2", "--overwrite"], capsys)
    text = one_paragraph(err)
    assert code == 2 and "Traceback" not in err
    assert f"could not write {os.path.join(run_folder(), 'resume.pth')} (No space left on device)" in text
    assert "Nothing was lost" in text and "resume.pth holds the state after epoch 1" in text
    assert load_checkpoint(os.path.join(run_folder(), "resume.pth"))["epoch"] == 1
    monkeypatch.setattr(torch, "save", real_save)
    assert train(["--epochs", "2", "--resume"], capsys)[0] == 0
    assert log_epochs(run_folder()) == [1, 2]


def test_resume_with_another_learning_rate_finds_the_run_and_continues_it_by_run_dir(in_tmp, capsys):
    assert train(["--epochs", "1", "--learning_rate", "0.05"], capsys)[0] == 0
    code, _, err = train(["--epochs", "1", "--learning_rate", "0.1", "--resume"], capsys)
    text = one_paragraph(err)
    assert code == 2 and f"{run_folder('0.1')} holds no run to resume" in text
    assert f"{run_folder('0.05')} (--learning_rate was 0.05, now 0.1)" in text
    assert f"--resume --allow_arg_changes --run_dir {run_folder('0.05')}" in text
    assert not os.path.exists(run_folder("0.1"))
    code, out, _ = train(["--epochs", "2", "--learning_rate", "0.1", "--resume", "--allow_arg_changes",
                          "--run_dir", run_folder("0.05")], capsys)
    assert code == 0 and not os.path.exists(run_folder("0.1"))
    resume = load_checkpoint(os.path.join(run_folder("0.05"), "resume.pth"))
    assert resume["epoch"] == 2 and resume["args"]["learning_rate"] == 0.1
    assert log_epochs(run_folder("0.05")) == [1, None, 2]
    # Another experiment of the same note (other flags besides the folder name's, as the CTC pipeline's two
    # settings): --resume starts it, naming the others.
    code, out, _ = train(["--epochs", "1", "--learning_rate", "0.2", "--momentum", "0.5", "--resume"], capsys)
    assert code == 0 and f"{run_folder('0.2')} holds no run yet; starting it (other runs of resnet8" in out
    assert os.path.isfile(os.path.join(run_folder("0.2"), "resnet8_last.pth"))


def test_the_nan_message_gives_the_command_that_continues_the_run(in_tmp, capsys, monkeypatch):
    argv = BASE + ["--epochs", "2", "--learning_rate", "0.05"]
    monkeypatch.setattr(sys, "argv", ["train_vanilla.py", *argv])
    real = engine.train_one_epoch

    def diverges_in_epoch_2(model, loader, optimizer, compute_loss, device, epoch, **kw):
        if epoch == 2:
            raise NonFiniteLossError(epoch, 3, float("nan"))
        return real(model, loader, optimizer, compute_loss, device, epoch, **kw)
    monkeypatch.setattr(engine, "train_one_epoch", diverges_in_epoch_2)
    code, _, err = cli(train_vanilla.main, train_vanilla.get_args_parser(), argv, capsys)
    text = one_paragraph(err)
    assert code == 2 and "loss became nan at epoch 2, step 3" in text
    command = text[text.index("python train_vanilla.py"):text.index(" (or start again")]
    assert command.endswith(f"--learning_rate 0.025 --resume --allow_arg_changes --run_dir {run_folder()}")
    monkeypatch.setattr(engine, "train_one_epoch", real)
    code, _, err = cli(train_vanilla.main, train_vanilla.get_args_parser(), shlex.split(command)[2:], capsys)
    assert not isinstance(code, int), err
    resume = load_checkpoint(os.path.join(run_folder(), "resume.pth"))
    assert resume["epoch"] == 2 and resume["args"]["learning_rate"] == 0.025


@pytest.mark.parametrize("script", ["train_vanilla.py", "train_ctc.py", "distill_cat.py"])
def test_the_continue_command_names_the_script_that_wrote_the_run(script):
    """The NaN message's command continues the run with its own script (a DISTILL run's optimizer holds
    the regression head, which train_vanilla.py would not build)."""
    from helper.train.run_folder import continue_command
    command = continue_command(script, None, "save/model/run", learning_rate=0.025)
    assert command == (f"python {script} <the same flags> --learning_rate 0.025 --resume --allow_arg_changes "
                       "--run_dir save/model/run")
    typed = ("./" + script, "--epochs", "9", "--learning_rate=0.1", "--run_dir", "old", "--resume")
    assert continue_command(script, typed, "save/model/run") == (
        f"python ./{script} --epochs 9 --learning_rate=0.1 --resume --allow_arg_changes --run_dir save/model/run")
