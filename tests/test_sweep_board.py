"""Sweep rows as TensorBoard scalars (helper/sweep/board.py), read back with TensorBoard's own reader."""
import os

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import discriminability
from helper.sweep.board import SweepBoard, sweep_log_dir, tag_prefix
from tests.helpers import cli, copy_run, read_rows


def scalars(log_dir):
    """{tag: [(step, value), ...]} of every event file under log_dir."""
    events = EventAccumulator(log_dir)
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tags_follow_the_results_file_name():
    assert tag_prefix("/r/transfer_cinic10_linear.csv") == "transfer/cinic10_linear/"
    assert tag_prefix("discriminability_cifar100_train.csv") == "discriminability/cifar100_train/"
    assert tag_prefix("mi_xt_cifar100.csv") == "mi/xt_cifar100/"
    assert tag_prefix("summary.csv") == "summary/"
    assert sweep_log_dir("tb", "save/model/run_a/") == os.path.join("tb", "run_a", "sweeps")


def test_numeric_columns_become_scalars_at_the_epoch(tmp_path):
    board = SweepBoard(str(tmp_path), "save/model/run_a", "mi_xt_digits_a.csv")
    board.add(4, {"mi": 0.5, "std": 0.125, "nan_steps": 2, "estimator": "mine", "layer": None, "flag": True})
    board.add(6, {"mi": 0.75, "std": 0.25, "nan_steps": 0, "estimator": "mine"})
    board.close()
    assert scalars(str(tmp_path / "run_a" / "sweeps")) == {
        "mi/xt_digits_a/mi": [(4, 0.5), (6, 0.75)], "mi/xt_digits_a/std": [(4, 0.125), (6, 0.25)],
        "mi/xt_digits_a/nan_steps": [(4, 2.0), (6, 0.0)]}


def test_no_tb_path_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    board = SweepBoard("", "run_a", "mi_xt_digits_a.csv")
    board.add(4, {"mi": 0.5})
    board.close()
    assert os.listdir(tmp_path) == []


def test_a_sweep_writes_its_rows_beside_the_training_events(digits_run, tmp_path, capsys):
    run_dir = copy_run(digits_run, tmp_path / "resnet8_digits_a_run")
    tb_path = tmp_path / "tensorboard"
    argv = ["--ckpt_path", run_dir, "--start_epoch", "2", "--skip", "1", "--n_init", "2", "--num_workers", "0",
            "--no_progress", "--tb_path", str(tb_path)]
    code, _, _ = cli(discriminability.main, discriminability.get_args_parser(), argv, capsys)
    assert code == 0
    events = scalars(str(tb_path / "resnet8_digits_a_run" / "sweeps"))
    rows = read_rows(os.path.join(run_dir, "discriminability_digits_a.csv"))
    assert set(events) == {f"discriminability/digits_a/{column}"
                           for column in ("recall_at_1", "nmi", "source_acc", "seconds", "nc1", "effective_rank",
                                          "coding_rate")}
    for column in ("recall_at_1", "nmi", "source_acc", "nc1", "effective_rank", "coding_rate"):
        written = events[f"discriminability/digits_a/{column}"]
        assert [step for step, _ in written] == [2, 3]
        assert [value for _, value in written] == pytest.approx([float(row[column]) for row in rows], rel=1e-5)
