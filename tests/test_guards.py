"""No two writers, no traceback: the run-folder lock, the one write guard (full disk, read-only folder, a path
below a regular file), output folders checked at start-up, strict --seed / --device / float weights, Ctrl-C,
and "is a directory" where a file is expected (docs/run_folder.md). Each test reproduces one failure case."""
import argparse
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import discriminability
import distill_cat
import mine
import plot
import train_ctc
import train_vanilla
import transfer
from helper.cli.sweep import run_flags, sweep_args_parser, sweep_config
from helper.core.checkpoint import CheckpointError, load_checkpoint
from helper.cli.train import INTERRUPTED_TRAINING
from helper.core.errors import INTERRUPTED
from helper.sweep.results import KIND, ResultsCSV, write_args_json
from helper.sweep.runner import run_sweep
from tests.conftest import REPO_ROOT
from tests.helpers import cli, copy_run, read_rows

TRAIN = ["--dataset", "digits_a", "--model", "resnet8", "--batch_size", "128", "--num_workers", "0",
         "--no_progress", "--note", "g", "--save_freq", "1"]
RUN = os.path.join(".", "save", "model", "resnet8_digits_a_lr_0.05_trial_0_g")       # the folder TRAIN names
ENOSPC = OSError(errno.ENOSPC, "No space left on device")
# What torch.save raises when the disk fills under its C++ writer (an OSError never reaches Python).
TORCH_FULL = RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1472 vs 1370")


def train(argv, capsys, script=train_vanilla):
    code, out, err = cli(script.main, script.get_args_parser(), TRAIN + argv, capsys)
    return (code if isinstance(code, int) else 0), out, err


def paragraph(err):
    return " ".join(err.split())


def log_epochs(folder):
    return [json.loads(line)["epoch"] for line in open(os.path.join(folder, "log.txt"))]


FIELDS = ["epoch", "acc", "seconds"]


def fake_sweep(run_dir, evaluate=None):
    """run_sweep over `run_dir` (empty ckpt_epoch_1..4.pth) with an evaluation that never opens them."""
    args = argparse.ArgumentParser(parents=[sweep_args_parser()]).parse_args(
        ["--ckpt_path", str(run_dir), "--start_epoch", "1", "--skip", "1", "--no_progress"])
    results = ResultsCSV(str(run_dir / "res.csv"), FIELDS)
    return run_sweep(sweep_config(args), run_flags(args), str(run_dir), results,
                     evaluate or (lambda epoch, path: {"acc": 10.0 * epoch, "seconds": 0.0}))


@pytest.fixture
def run_dir(tmp_path):
    for epoch in range(1, 5):
        (tmp_path / f"ckpt_epoch_{epoch}.pth").write_bytes(b"")
    return tmp_path


# ------------------------------------------------------------------ 5. one writer per run folder
def wait_for(predicate, what, process, timeout=180):
    start = time.time()
    while not predicate():
        assert process.poll() is None, f"the first trainer exited early: {process.stderr.read()}"
        assert time.time() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_second_trainer_of_a_run_folder_names_the_holder_and_touches_nothing(in_tmp, capsys):
    """Case 5 with a real first trainer in another process; then Ctrl-C (SIGINT) ends it (case 16)."""
    first = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "train_vanilla.py"), *TRAIN,
                              "--epochs", "400", "--tb_path", "tb"], cwd=in_tmp, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True,
                             # a suite started in the background inherits SIGINT ignored; Ctrl-C is what is tested
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: os.path.isfile(os.path.join(RUN, "log.txt")), "the first epoch", first)
        for argv in (["--seed", "1", "--epochs", "400"], ["--epochs", "400", "--resume"]):
            before = {name: os.path.getmtime(os.path.join(RUN, name)) for name in ("ckpt_epoch_0.pth", "args.json")}
            code, _, err = train(argv + ["--tb_path", "tb"], capsys)
            text = paragraph(err)
            assert code == 2 and "Traceback" not in err
            assert f"run folder {RUN} is being trained by another process (process {first.pid} " in text
            assert "stopped before touching anything" in text
            assert before == {name: os.path.getmtime(os.path.join(RUN, name)) for name in before}
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130 and err.strip().splitlines()[-1] == INTERRUPTED_TRAINING
    assert "Traceback" not in err and not os.path.exists(os.path.join(RUN, "train.lock"))
    epochs = log_epochs(RUN)
    assert epochs == list(range(1, len(epochs) + 1))                # one writer: no epoch twice


def test_the_run_lock_is_free_again_after_a_run_and_after_a_refused_start(in_tmp, capsys):
    assert train(["--epochs", "1"], capsys)[0] == 0
    assert train(["--epochs", "1"], capsys)[0] == 2                 # already holds checkpoints: refused
    code, out, _ = train(["--epochs", "1", "--resume"], capsys)
    assert code == 0 and "already finished" in out
    assert log_epochs(RUN) == [1] and "train.lock" not in os.listdir(RUN)


# ------------------------------------------------------------------ 6. full disk
def test_torchs_full_disk_error_in_training_is_one_paragraph_and_resume_continues(in_tmp, capsys, monkeypatch):
    real_save = torch.save

    def full_at_resume_of_epoch_2(obj, f, *a, **kw):
        if isinstance(obj, dict) and "optimizer" in obj and obj["epoch"] == 2:
            raise TORCH_FULL
        return real_save(obj, f, *a, **kw)
    monkeypatch.setattr(torch, "save", full_at_resume_of_epoch_2)
    code, _, err = train(["--epochs", "2"], capsys)
    text = paragraph(err)
    assert code == 2 and "Traceback" not in err
    assert f"could not write {os.path.join(RUN, 'resume.pth')} (No space left on device" in text
    assert "Nothing was lost" in text and "resume.pth holds the state after epoch 1" in text
    assert not [name for name in os.listdir(RUN) if name.startswith(".tmp_")]
    monkeypatch.setattr(torch, "save", real_save)
    assert train(["--epochs", "2", "--resume"], capsys)[0] == 0
    assert log_epochs(RUN) == [1, 2]


def test_a_full_disk_when_a_sweep_takes_its_lock_is_one_paragraph(run_dir, capsys, monkeypatch):
    def full(fd, data):
        raise ENOSPC
    monkeypatch.setattr(os, "write", full)
    code, _, err = cli(lambda args: fake_sweep(run_dir), argparse.ArgumentParser(), [], capsys)
    text = paragraph(err)
    assert code == 2 and "Traceback" not in err
    assert f"could not write {run_dir / 'res.csv.lock'} (No space left on device)" in text
    assert sorted(os.listdir(run_dir)) == [f"ckpt_epoch_{e}.pth" for e in range(1, 5)]     # no file left


def test_a_full_disk_when_mine_writes_its_protocol_record_is_one_paragraph(digits_run, tmp_path, capsys,
                                                                            monkeypatch):
    run = copy_run(digits_run, tmp_path / "run")
    real_replace = os.replace

    def full_for_the_record(src, dst):
        if str(dst).endswith(".args.json"):
            raise OSError(errno.ENOSPC, "No space left on device", dst)
        return real_replace(src, dst)
    monkeypatch.setattr(os, "replace", full_for_the_record)
    argv = ["--ckpt_path", run, "--mode", "xy", "--dataset", "digits_a", "--iter_num", "2", "--window", "2", "--batch_size", "32",
            "--num_workers", "0", "--no_progress", "--tb_path", ""]
    code, _, err = cli(mine.main, mine.get_args_parser(), argv, capsys)
    text = paragraph(err)
    assert code == 2 and "Traceback" not in err
    assert f"could not write {os.path.join(run, 'mi_xy_digits_a.args.json')} (No space left on device)" in text
    assert "Nothing was lost" in text
    assert not [name for name in os.listdir(run) if name.startswith(".tmp_") or name.endswith((".csv", ".lock"))]


def test_a_full_disk_while_appending_a_row_keeps_the_rows_before(run_dir, capsys, monkeypatch):
    assert fake_sweep(run_dir) == 0
    (run_dir / "ckpt_epoch_5.pth").write_bytes(b"")
    before = (run_dir / "res.csv").read_bytes()
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(ENOSPC))
    code, _, err = cli(lambda args: fake_sweep(run_dir), argparse.ArgumentParser(), [], capsys)
    text = paragraph(err)
    assert code == 2 and f"could not write {run_dir / 'res.csv'} (No space left on device)" in text
    assert "keeps every row written before" in text and (run_dir / "res.csv").read_bytes() == before


# ------------------------------------------------------------------ 11. plot.py --out
@pytest.fixture
def plotted_run(tmp_path):
    """A run folder with one discriminability results file and the records plot.py reads."""
    run = tmp_path / "run"
    run.mkdir()
    train_args = train_vanilla.get_args_parser().parse_args(["--dataset", "digits_a", "--model", "resnet8"])
    (run / "args.json").write_text(json.dumps(run_flags(train_args)))
    results = ResultsCSV(str(run / "discriminability_digits_a.csv"), KIND["discriminability"].columns)
    for epoch in (1, 2):
        results.append({"epoch": epoch, "recall_at_1": 50.0 + epoch, "nmi": 0.1, "source_acc": 90.0, "seconds": 1.0})
    write_args_json(results, run_flags(discriminability.get_args_parser().parse_args(["--ckpt_path", str(run)])))
    return run


def test_plot_out_below_a_regular_file_is_one_paragraph(plotted_run, tmp_path, capsys):
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "figures"
    code, _, err = cli(plot.main, plot.get_args_parser(), [str(plotted_run), "--out", str(out)], capsys)
    text = paragraph(err)
    assert code == 2 and "Traceback" not in err
    assert f"--out {out} cannot take this script's output ({tmp_path / 'afile'} is a regular file" in text


def test_plot_out_on_a_read_only_file_system_is_one_paragraph(plotted_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "figures"
    real_makedirs = os.makedirs

    def read_only(path, *a, **kw):
        if str(path).startswith(str(out)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_makedirs(path, *a, **kw)
    monkeypatch.setattr(os, "makedirs", read_only)
    code, _, err = cli(plot.main, plot.get_args_parser(), [str(plotted_run), "--out", str(out)], capsys)
    text = paragraph(err)
    assert code == 2 and "Traceback" not in err
    assert f"--out {out} cannot take this script's output (Read-only file system)" in text
    assert "nothing was changed or lost" in text


def test_a_full_disk_while_drawing_leaves_no_half_figure(plotted_run, tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    def full(self, fname, **kw):
        fname.write(b"%PDF-half")
        raise ENOSPC
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    code, _, err = cli(plot.main, plot.get_args_parser(), [str(plotted_run), "--out", str(tmp_path / "f")], capsys)
    assert code == 2 and "Traceback" not in err and "(No space left on device)" in paragraph(err)
    assert os.listdir(tmp_path / "f") == []


# ------------------------------------------------------------------ output folders of the sweeps
@pytest.mark.parametrize("flag", ["--cache_dir", "--tb_path"])
def test_a_sweep_output_folder_naming_a_regular_file_stops_before_any_record(digits_run, tmp_path, capsys, flag):
    run = copy_run(digits_run, tmp_path / "run")
    before = sorted(os.listdir(run))
    (tmp_path / "afile").write_text("")
    argv = ["--ckpt_path", run, "--dataset", "digits_a", "--num_workers", "0", "--no_progress",
            "--tb_path", str(tmp_path / "tb"), flag, str(tmp_path / "afile")]
    code, _, err = cli(discriminability.main, discriminability.get_args_parser(), argv, capsys)
    text = paragraph(err)
    assert code == 2 and "Traceback" not in err
    assert f"{flag} {tmp_path / 'afile'} cannot take this script's output" in text
    assert sorted(os.listdir(run)) == before                        # no record, no lock, no row


@pytest.mark.parametrize("flag, value", [("--model_path", "afile"), ("--tb_path", os.path.join("afile", "tb"))])
def test_a_training_output_folder_below_a_regular_file_stops_before_any_epoch(in_tmp, capsys, flag, value):
    (in_tmp / "afile").write_text("")
    code, _, err = train(["--epochs", "1", flag, value], capsys)
    text = paragraph(err)
    assert code == 2 and "Traceback" not in err and "stopped before any epoch" in text
    assert f"({in_tmp / 'afile'} is a regular file, not a folder)" in text
    assert (in_tmp / "afile").read_text() == "" and not os.path.exists(os.path.join(RUN, "log.txt"))


# ------------------------------------------------------------------ 12. --device
def test_an_unusable_device_stops_training_before_anything_is_written(in_tmp, capsys):
    code, _, err = train(["--epochs", "1", "--device", "mps"], capsys)
    assert code == 2 and "Traceback" not in err and "--device mps: this PyTorch build cannot use mps" in err
    assert not os.path.exists("save")


def test_an_unusable_device_stops_a_sweep_before_its_protocol_record(digits_run, tmp_path, capsys):
    run = copy_run(digits_run, tmp_path / "run")
    before = sorted(os.listdir(run))
    argv = ["--ckpt_path", run, "--source_dataset", "digits_a", "--target_dataset", "digits_b", "--device", "mps",
            "--num_workers", "0", "--no_progress", "--tb_path", ""]
    code, _, err = cli(transfer.main, transfer.get_args_parser(), argv, capsys)
    assert code == 2 and "Traceback" not in err and "--device mps: this PyTorch build cannot use mps" in err
    assert sorted(os.listdir(run)) == before


# ------------------------------------------------------------------ 13, 14. flags
@pytest.mark.parametrize("parser, extra", [(train_vanilla.get_args_parser, []),
                                           (transfer.get_args_parser, ["--ckpt_path", "x"]),
                                           (mine.get_args_parser, ["--ckpt_path", "x", "--mode", "xt",
                                                                   "--dataset", "digits_a"])])
@pytest.mark.parametrize("seed", ["1180591620717411303424", "-1", str(2**32)])
def test_a_seed_outside_0_to_2_32_is_refused_where_parsed(parser, extra, seed, capsys):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(extra + ["--seed", seed])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "argument --seed" in err and "in [0, 4294967295]" in err
    assert parser().parse_args(extra + ["--seed", str(2**32 - 1)]).seed == 2**32 - 1


@pytest.mark.parametrize("parser, argv", [
    (distill_cat.get_args_parser, ["--teachers", "t.pth", "--distill_weight", "nan"]),
    (distill_cat.get_args_parser, ["--teachers", "t.pth", "--ce_weight", "inf"]),
    (train_ctc.get_args_parser, ["-a", "nan"]),
    (train_ctc.get_args_parser, ["--kd_T", "0"]),
    (train_ctc.get_args_parser, ["--nce_t", "nan"]),
    (train_ctc.get_args_parser, ["--lambda_corr", "-1"]),
])
def test_float_weights_refuse_nan_infinity_and_out_of_range_where_parsed(parser, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"argument {argv[-2]}" in err and "expected" in err


def test_every_float_flag_of_every_script_is_range_checked():
    """No `type=float` is left: each float flag takes one of helper.cli.flags' finite types."""
    import bench
    import benchmarks.ctc
    import benchmarks.mine
    import benchmarks.probe
    from scripts import distill_table, results_table
    scripts = [train_vanilla, train_ctc, distill_cat, transfer, discriminability, mine, plot, bench,
               benchmarks.ctc, benchmarks.mine, benchmarks.probe, distill_table, results_table]
    for script in scripts:
        for action in script.get_args_parser()._actions:
            assert action.type is not float or action.default is argparse.SUPPRESS, (script.__name__, action.dest)


# ------------------------------------------------------------------ 15. "is a directory"
def test_a_checkpoint_path_that_is_a_directory_says_so(tmp_path):
    (tmp_path / "ckpt_epoch_2.pth").mkdir()
    with pytest.raises(CheckpointError, match="ckpt_epoch_2.pth is a directory, not a checkpoint file"):
        load_checkpoint(str(tmp_path / "ckpt_epoch_2.pth"))


def test_a_teacher_that_is_a_directory_says_so(in_tmp, capsys):
    os.mkdir("teacher.pth")
    code, _, err = train(["--epochs", "2", "--stage_two_epoch", "1", "--teacher", "teacher.pth", "--nce_k", "64"],
                         capsys,
                         script=train_ctc)
    assert code == 2 and "Traceback" not in err
    assert "--teacher: checkpoint teacher.pth is a directory" in paragraph(err)


def test_a_results_path_that_is_a_directory_says_so(run_dir, capsys):
    (run_dir / "res.csv").mkdir()
    code, _, err = cli(lambda args: fake_sweep(run_dir), argparse.ArgumentParser(), [], capsys)
    text = paragraph(err)
    assert code == 2 and f"{run_dir / 'res.csv'} is a directory, where this sweep keeps its results" in text
    assert "computes the rest" not in text and os.listdir(run_dir / "res.csv") == []


# ------------------------------------------------------------------ 16. Ctrl-C
def test_ctrl_c_in_a_sweep_is_one_line_exit_130_and_the_rerun_computes_the_rest(run_dir, capsys):
    def interrupted_at_epoch_3(epoch, path):
        if epoch == 3:
            raise KeyboardInterrupt
        return {"acc": 10.0 * epoch, "seconds": 0.0}
    try:
        code, _, err = cli(lambda args: fake_sweep(run_dir, interrupted_at_epoch_3), argparse.ArgumentParser(), [],
                           capsys)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C left the script as a KeyboardInterrupt traceback")
    assert code == 130 and err.strip().splitlines()[-1] == INTERRUPTED and "Traceback" not in err
    assert [row["epoch"] for row in read_rows(run_dir / "res.csv")] == ["1", "2"]
    assert not (run_dir / "res.csv.lock").exists()
    computed = []
    assert fake_sweep(run_dir, lambda epoch, path: computed.append(epoch) or {"acc": 0.0, "seconds": 0.0}) == 0
    assert computed == [3, 4]
