"""The seeded results table (helper/report/tradeoff_table.py, scripts/results_table.py) against hand-computed values
on synthetic result files."""
import csv
import math
import os

import pytest

from helper.core.stats import mean_std, spearman, t_interval, welch_interval
from helper.report.tradeoff_table import TableSpec, smooth, summarise_method, to_markdown
from scripts import results_table
from tests.helpers import cli

T_975_DF2 = 4.302653    # Student-t quantiles from a table: t(0.975; 2) and t(0.975; 4)
T_975_DF4 = 2.776445
EPOCHS = [3, 6, 9, 12]
SPEC = TableSpec("transfer_digits_b_linear_cv5", "digits_a", "digits_b", window=1)


def write_csv(path, fields, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def fake_run(root, name, transfer, mi_ty_target=None, source=(90.0, 99.0, 99.5, 100.0)):
    """A run folder with a CV transfer file (final_acc per EPOCHS, sem 1.5) and optionally mi_ty_digits_b."""
    run = root / name
    run.mkdir()
    write_csv(run / f"{SPEC.transfer}.csv", ["epoch", "final_acc", "source_acc", "final_acc_sem"],
              [{"epoch": e, "final_acc": a, "source_acc": s, "final_acc_sem": 1.5}
               for e, a, s in zip(EPOCHS, transfer, source)])
    if mi_ty_target is not None:
        write_csv(run / "mi_ty_digits_b.csv", ["epoch", "mi", "std"],
                  [{"epoch": e, "mi": v, "std": 0.01} for e, v in zip(EPOCHS, mi_ty_target)])
    return str(run)


VANILLA = [(70, 80, 78, 74), (72, 82, 79, 75), (71, 84, 80, 73)]   # mean 71, 82, 79, 74: peak at 6
CTC = [(70, 79, 80, 78), (71, 80, 81, 80), (70, 81, 80, 79)]        # mean 70.3, 80, 80.3, 79: peak at 9


@pytest.fixture
def runs(tmp_path):
    vanilla = [fake_run(tmp_path, f"v{i}", c, mi_ty_target=(1.0, 1.2, 1.1, 0.9 - 0.1 * i)) for i, c in enumerate(VANILLA)]
    ctc = [fake_run(tmp_path, f"c{i}", c) for i, c in enumerate(CTC)]
    return vanilla, ctc


def test_stats_by_hand():
    assert mean_std([80.0, 90.0, 100.0]) == (90.0, pytest.approx(10.0))
    mean, low, high = t_interval([-6.0, -7.0, -11.0])
    half = T_975_DF2 * math.sqrt(7.0) / math.sqrt(3)        # std of the drops: sqrt((4 + 1 + 9) / 2)
    assert mean == -8.0 and (low, high) == (pytest.approx(-8.0 - half, abs=1e-5), pytest.approx(-8.0 + half, abs=1e-5))
    mean, low, high = t_interval([1.0, 2.0, 3.0, 6.0])
    half = 3.182446 * math.sqrt(14 / 3) / 2                  # sample variance 14 / 3, t_0.975 with 3 df
    assert mean == 3.0 and (low, high) == pytest.approx((3.0 - half, 3.0 + half), rel=1e-6)
    diff, low, high = welch_interval([74.0, 75.0, 73.0], [78.0, 80.0, 79.0])
    half = T_975_DF4 * math.sqrt(1 / 3 + 1 / 3)              # both stds 1, n 3: df = 4
    assert diff == 5.0 and low == pytest.approx(5.0 - half, abs=1e-5) and high == pytest.approx(5.0 + half, abs=1e-5)
    assert all(math.isnan(x) for x in t_interval([1.0])[1:] + welch_interval([1.0], [2.0, 3.0])[1:])
    # ranks (1, 4, 3, 2) against (4, 3, 2, 1): 1 - 6 * 12 / (4 * 15); with a tie, Pearson of the mean ranks
    assert spearman([70, 80, 78, 74], [4, 3, 2, 1]) == pytest.approx(-0.2)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9))
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5])) and math.isnan(spearman([1, 2], [1, 2]))


def test_smoothing_is_a_centred_moving_average_truncated_at_the_ends():
    assert smooth({1: 1.0, 2: 3.0, 3: 8.0, 4: 0.0}, 3) == pytest.approx({1: 2.0, 2: 4.0, 3: 11 / 3, 4: 4.0})
    assert smooth({5: 2.0}, 3) == {5: 2.0}


def test_method_summary_by_hand(runs):
    vanilla, _ = runs
    s = summarise_method("vanilla", vanilla, SPEC)
    assert (s["peak_epoch"], s["end_epoch"], s["seeds"]) == (6, 12, 3)
    assert s["peak"] == (82.0, pytest.approx(2.0)) and s["end"] == (74.0, pytest.approx(1.0))
    half = T_975_DF2 * math.sqrt(7.0) / math.sqrt(3)
    assert s["drop"] == (-8.0, pytest.approx(-8.0 - half, abs=1e-5), pytest.approx(-8.0 + half, abs=1e-5))
    assert s["late_drop"] == "yes"
    assert s["source_end"] == (100.0, 0.0) and s["source_saturated_at"] == 6    # 99.0 is within 1 point of 100
    assert s["probe_se"] == pytest.approx(1.5)
    # I(T;Y) on the target, end - peak per seed: 0.9 - 1.2, 0.8 - 1.2, 0.7 - 1.2
    mi = s["mi"][("ty", "target", "")]
    half = T_975_DF2 * 0.1 / math.sqrt(3)
    assert mi == (pytest.approx(-0.4), pytest.approx(-0.4 - half), pytest.approx(-0.4 + half))
    assert s["mi"][("xt", "target", "")] is None                                     # not swept: not measured


def test_smoothing_window_moves_the_peak(runs):
    vanilla, _ = runs
    s = summarise_method("vanilla", vanilla, TableSpec(SPEC.transfer, "digits_a", "digits_b", window=3))
    # smoothed seed means: 76.5, 77.33, 78.33, 76.5 -> peak at 9; end = mean of the last two checkpoints
    assert s["peak_epoch"] == 9
    assert s["end"][0] == pytest.approx((78 + 74 + 79 + 75 + 80 + 73) / 6)


def test_markdown_table_and_ctc_against_vanilla(runs):
    vanilla, ctc = runs
    text = to_markdown([summarise_method("vanilla", vanilla, SPEC), summarise_method("ctc", ctc, SPEC)], SPEC)
    half = T_975_DF4 * math.sqrt(2 / 3)
    assert f"| ctc | +5.0 [{5 - half:+.1f}, {5 + half:+.1f}] | yes |" in text
    assert "| vanilla | 3 | 100.0 ± 0.0 | 6 | 6 | 82.0 ± 2.0 | 74.0 ± 1.0 |" in text
    assert "| ctc | 3 | 100.0 ± 0.0 | 6 | 9 | 80.3 ± 0.6 | 79.0 ± 1.0 |" in text
    assert "| ctc | not measured | not measured | not measured | not measured |" in text   # no MI files


def test_script_writes_the_table_and_refuses_bad_input(runs, tmp_path, capsys):
    vanilla, ctc = runs
    out = tmp_path / "table.md"
    argv = ["--group", "vanilla", *vanilla, "--group", "ctc", *ctc, "--window", "1", "--out", str(out)]
    code, stdout, _ = cli(results_table.main, results_table.get_args_parser(), argv, capsys)
    assert code == 0 and out.read_text() == stdout and "lifts the final transfer" in stdout
    code, _, err = cli(results_table.main, results_table.get_args_parser(), ["--group", "vanilla", "nowhere"], capsys)
    assert code == 2 and "nowhere" in err
    code, _, err = cli(results_table.main, results_table.get_args_parser(), argv[:-2] + ["--window", "2"], capsys)
    assert code == 2 and "odd" in err


def test_memorisation_table_from_held_out_fits(runs):
    vanilla, ctc = runs
    for i, run in enumerate(vanilla):   # a held-out fit per seed: 0.5 + 0.1 i on its training rows, 0.1 i unseen
        write_csv(os.path.join(run, "mi_ty_digits_b_holdout.csv"), ["epoch", "mi", "std", "mi_train", "best_step"],
                  [{"epoch": e, "mi": 0.1 * i, "std": 0.01, "mi_train": 0.5 + 0.1 * i, "best_step": 250}
                   for e in EPOCHS])
    s = summarise_method("vanilla", vanilla, SPEC)
    m = s["memorisation"]["ty"]
    assert m["all_rows"] == (pytest.approx(0.8), pytest.approx(0.1))          # 0.9, 0.8, 0.7 at the end
    assert m["training_rows"] == (pytest.approx(0.6), pytest.approx(0.1))
    assert m["held_out"] == (pytest.approx(0.1), pytest.approx(0.1))
    assert s["memorisation"]["xt"] is None                                     # no held-out I(X;T) fit
    text = to_markdown([s, summarise_method("ctc", ctc, SPEC)], SPEC)
    assert "| vanilla | I(T;Y) | 0.800 ± 0.100 | 0.600 ± 0.100 | 0.100 ± 0.100 |" in text
    assert "| ctc | I(T;Y) |" not in text


def test_compression_measures_end_minus_peak_and_rank_correlation_by_hand(runs):
    vanilla, ctc = runs
    nc1 = [(4, 3, 2, 1), (1, 2, 3, 4), (1, 4, 3, 2)]   # against VANILLA's transfer ranks (1, 4, 3, 2)
    for run, values in zip(vanilla, nc1):
        write_csv(os.path.join(run, "discriminability_digits_b.csv"), ["epoch", "recall_at_1", "nc1"],
                  [{"epoch": e, "recall_at_1": 50, "nc1": v} for e, v in zip(EPOCHS, values)])
    s = summarise_method("vanilla", vanilla, SPEC)
    assert s["measures"][("nc1", "target")] == pytest.approx(t_interval([1 - 3, 4 - 2, 2 - 4]))   # E=12, P=6
    assert s["spearman"][("nc1", "target")] == pytest.approx([-0.2, 0.2, 1.0])
    assert s["measures"][("effective_rank", "target")] is None                   # a file written before the column
    assert s["measures"][("nc1", "source")] is None and s["spearman"][("nc1", "source")] is None
    text = to_markdown([s, summarise_method("ctc", ctc, SPEC)], SPEC)
    mean, low, high = t_interval([-0.2, 0.2, 1.0])
    assert f"| vanilla | -0.20, +0.20, +1.00; mean {mean:+.2f} [{low:+.2f}, {high:+.2f}] |" in text
    assert "| method | NC1 on digits_b |" in text and "NC1 on digits_a" not in text   # sides nobody measured: left out
    assert "| ctc | not measured |" in text


def test_runs_without_compression_measures_say_so_once(runs):
    vanilla, ctc = runs
    text = to_markdown([summarise_method("vanilla", vanilla, SPEC), summarise_method("ctc", ctc, SPEC)], SPEC)
    assert "Compression measures (NC1, effective rank, coding rate): not measured" in text
    assert "Spearman" not in text
