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


def visible_titles(fig):
    return sorted(ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title())


def labelled(runs):
    return [(run.name, str(run)) for run in runs]


def test_each_figure_has_its_panels(runs):
    transfer = plot.lines_figure(labelled(runs), "transfer_*_linear.csv", [("final_acc", "acc")], "transfer", "t")
    assert visible_titles(transfer) == ["transfer to digits_b (linear)"]
    disc = plot.lines_figure(labelled(runs), "discriminability_*.csv", [("recall_at_1", "R@1"), ("nmi", "NMI")],
                             "discriminability", "d")
    assert [ax.get_ylabel() for ax in disc.axes if ax.get_visible()] == ["NMI", "R@1"]
    info = plot.lines_figure(labelled(runs), "mi_*.csv", [("mi", "nats")], "information", "MINE",
                             cols=lambda file: file.split("_", 2)[2], expected=plot.mi_partners)
    assert visible_titles(info) == ["I(T;Y) on digits_a", "I(T;Y) on digits_b", "I(X;T) on digits_a",
                                    "I(X;T) on digits_b"]
    assert all(len(ax.get_lines()) == 2 for ax in info.axes if ax.get_visible())   # both runs overlaid


def test_information_plane_shares_one_epoch_scale_across_runs(runs):
    for mode in ("xt", "ty"):   # the second run trains longer, as CTC (300 epochs) beside vanilla (200)
        write_rows(runs[1] / f"mi_{mode}_digits_a.csv", ["epoch", "mi"], [{"epoch": 20, "mi": 3.0}])
    fig = plot.information_plane_figure(labelled(runs))
    assert visible_titles(fig) == ["information plane on digits_a", "information plane on digits_b"]
    plane = next(ax for ax in fig.axes if ax.get_title() == "information plane on digits_a")
    scales = {(c.norm.vmin, c.norm.vmax) for c in plane.collections}
    assert scales == {(2, 20)}                                   # one colour scale, not one per run
    assert len({c.get_paths()[0].vertices.tobytes() for c in plane.collections}) == 2   # a marker per run


def test_a_panel_or_curve_missing_is_noted(runs, tmp_path, capsys):
    os.remove(runs[0] / "mi_ty_digits_b.csv")
    os.remove(runs[1] / "mi_ty_digits_b.csv")
    os.remove(runs[1] / "mi_xt_digits_a.csv")
    assert plot.main(plot.get_args_parser().parse_args([str(r) for r in runs] + ["--out", str(tmp_path)])) == 0
    text = capsys.readouterr().out
    assert "no run has mi_ty_digits_b.csv; the 'I(T;Y) on digits_b' panel of information is left out" in text
    assert "r8_digits_a_ctc has no mi_xt_digits_a.csv; its curve is left out of information" in text
