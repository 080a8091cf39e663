"""discriminability.py on the tiny digits_a run shared by the sweep tests (trained once per session)."""
import json
import math

import pytest

import discriminability
from helper.sweep.metrics import CODING_RATE_EPS2
from tests.helpers import cli, copy_run, read_rows


@pytest.fixture(scope="module")
def run(digits_run):
    return digits_run


def sweep(run_dir, capsys, *extra):
    argv = ["--ckpt_path", run_dir, "--start_epoch", "0", "--skip", "1", "--n_init", "2",
            "--num_workers", "0", "--no_progress", *extra]
    return cli(discriminability.main, discriminability.get_args_parser(), argv, capsys)


def test_sweep_writes_metrics_and_resumes(run, tmp_path, capsys, monkeypatch):
    fresh = copy_run(run, tmp_path / "run")
    code, out, _ = sweep(fresh, capsys)
    assert code == 0
    rows = read_rows(f"{fresh}/discriminability_digits_a.csv")       # data set from the checkpoints
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    for row in rows:
        assert 0 <= float(row["recall_at_1"]) <= 100
        assert 0 <= float(row["nmi"]) <= 1
        assert 0 <= float(row["source_acc"]) <= 100
        assert float(row["nc1"]) > 0 and 1 <= float(row["effective_rank"]) <= 64    # resnet8's features: 64 wide
        assert 0 < float(row["coding_rate"]) <= 64 / 2 * math.log(1 + 1 / CODING_RATE_EPS2)   # its maximum
    assert "Source Epoch: 3, Recall@1: " in out and ", coding rate: " in out
    with open(f"{fresh}/discriminability_digits_a.args.json") as f:
        assert json.load(f)["kmeans"] == "torch"                       # the default, part of the protocol
    code, _, err = sweep(fresh, capsys, "--kmeans", "sklearn")
    assert code == 2 and "--kmeans was 'torch', now 'sklearn'" in err

    calls = []
    original = discriminability.metrics_of
    monkeypatch.setattr(discriminability, "metrics_of", lambda *a: calls.append(1) or original(*a))
    code, out, _ = sweep(fresh, capsys)
    assert code == 0 and calls == [] and "4 checkpoints already" in out
    assert read_rows(f"{fresh}/discriminability_digits_a.csv") == rows

    code, _, _ = sweep(fresh, capsys, "--train_split", "--start_epoch", "3")
    assert code == 0 and len(calls) == 1
    (train_row,) = read_rows(f"{fresh}/discriminability_digits_a_train.csv")
    assert train_row["epoch"] == "3" and 0 <= float(train_row["nmi"]) <= 1


def test_wrong_architecture_exits_2(run, tmp_path, capsys):
    code, _, err = sweep(copy_run(run, tmp_path / "run"), capsys, "--model", "resnet14")
    assert code == 2 and "resnet8" in err and "resnet14" in err


def test_a_file_written_before_the_compression_columns_is_kept_and_force_starts_it_anew(run, tmp_path, capsys):
    fresh = copy_run(run, tmp_path / "run")
    code, _, _ = sweep(fresh, capsys, "--end_epoch", "1")
    assert code == 0
    path = f"{fresh}/discriminability_digits_a.csv"
    old = [{k: r[k] for k in ("epoch", "recall_at_1", "nmi", "source_acc", "seconds")} for r in read_rows(path)]
    with open(path, "w") as f:                           # the columns an older discriminability.py wrote
        f.write("epoch,recall_at_1,nmi,source_acc,seconds\n" + "".join(",".join(r.values()) + "\n" for r in old))
    code, out, _ = sweep(fresh, capsys, "--end_epoch", "1")
    assert code == 0 and "2 checkpoints already" in out   # a rerun reads it and recomputes nothing
    code, _, err = sweep(fresh, capsys)
    assert code == 2 and "--force" in err                  # new rows would not fit its columns
    code, out, _ = sweep(fresh, capsys, "--force")
    assert code == 0 and "kept the previous discriminability_digits_a.csv" in out
    rows = read_rows(path)
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3"] and all(r["nc1"] for r in rows)
    assert len(read_rows(path + ".bak")) == 2
