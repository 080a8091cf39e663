"""plot.py on synthetic result CSVs: the figures exist, have the expected panels, and missing files are survived."""
import os

import matplotlib.image as mpimg
import pytest

import plot
from helper.sweep import ResultsCSV


def write_rows(path, fields, rows):
    results = ResultsCSV(str(path), fields)
    for row in rows:
        results.append(row)


@pytest.fixture
def runs(tmp_path):
    made = []
    for name, slope in [("r8_digits_a_vanilla", -1.0), ("r8_digits_a_ctc", 0.5)]:
        run = tmp_path / name
        run.mkdir()
        epochs = range(2, 12, 2)
        write_rows(run / "transfer_digits_b_linear.csv", ["epoch", "final_acc", "best_acc_on_eval"],
                   [{"epoch": e, "final_acc": 60 + slope * e, "best_acc_on_eval": 61 + slope * e} for e in epochs])
        write_rows(run / "discriminability_digits_a.csv", ["epoch", "recall_at_1", "nmi"],
                   [{"epoch": e, "recall_at_1": 50 + e, "nmi": 0.05 * e} for e in epochs])
        for mode in ("xt", "ty"):
            for dataset in ("digits_a", "digits_b"):
                write_rows(run / f"mi_{mode}_{dataset}.csv", ["epoch", "mi"],
                           [{"epoch": e, "mi": 1 + slope * 0.1 * e} for e in epochs])
        made.append(run)
    # a shard file of a second sweep merges into the transfer curve
    write_rows(made[0] / "transfer_digits_b_linear.shard1of2.csv", ["epoch", "final_acc"], [{"epoch": 12, "final_acc": 40}])
    return made


def test_all_figures_are_written(runs, tmp_path, capsys):
    out = tmp_path / "fig"
    assert plot.main(plot.get_args_parser().parse_args([str(r) for r in runs] + ["--out", str(out)])) == 0
    for name in ("transfer", "discriminability", "information", "information_plane"):
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000, name
    image = mpimg.imread(out / "information.png")
    assert image.shape[1] > image.shape[0]  # four MI panels (xt/ty x two data sets) laid out in a grid
    assert "4 figures" in capsys.readouterr().out


def test_series_merge_shards_and_panels_follow_the_files(runs):
    series = plot.read_series(str(runs[0]), "transfer_*_linear.csv")
    epochs, acc = plot.column(series["transfer_digits_b_linear"], "final_acc")
    assert epochs == [2, 4, 6, 8, 10, 12] and acc[-1] == 40
    assert sorted(plot.read_series(str(runs[0]), "mi_*.csv")) == [
        "mi_ty_digits_a", "mi_ty_digits_b", "mi_xt_digits_a", "mi_xt_digits_b"]


def test_missing_results_leave_figures_out_without_crashing(runs, tmp_path, capsys):
    for f in os.listdir(runs[1]):
        if f.startswith(("mi_", "discriminability_")):
            os.remove(runs[1] / f)
    empty = tmp_path / "empty_run"
    empty.mkdir()
    out = tmp_path / "fig2"
    assert plot.main(plot.get_args_parser().parse_args([str(runs[1]), str(empty), "--out", str(out)])) == 0
    text = capsys.readouterr().out
    assert (out / "transfer.png").exists() and not (out / "information.png").exists()
    assert "information plane left out" in text and "discriminability figure left out" in text


def test_unknown_run_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        plot.run_cli(plot.main, plot.get_args_parser(), [str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert exc.value.code == 2 and "not found" in capsys.readouterr().err


def test_a_sweep_run_only_as_shards_is_plotted(tmp_path):
    run = tmp_path / "sharded_run"
    run.mkdir()
    for shard, epochs in ((0, [2, 6]), (1, [4])):
        write_rows(run / f"transfer_cinic10_linear.shard{shard}of2.csv", ["epoch", "final_acc"],
                   [{"epoch": e, "final_acc": 50 + e} for e in epochs])
    series = plot.read_series(str(run), "transfer_*_linear.csv")
    assert list(series) == ["transfer_cinic10_linear"]
    assert plot.column(series["transfer_cinic10_linear"], "final_acc") == ([2, 4, 6], [52.0, 54.0, 56.0])
    out = tmp_path / "fig"
    assert plot.main(plot.get_args_parser().parse_args([str(run), "--out", str(out)])) == 0
    assert (out / "transfer.png").stat().st_size > 1000
