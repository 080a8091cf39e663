"""scripts.pilot_reading: the saturation epoch and final accuracy of a pilot's training curve, read from
log.txt's training columns only."""
import json

import pytest

from scripts import pilot_reading
from tests.helpers import cli


def write_log(run_dir, train_acc, seconds=2.0):
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "log.txt", "w") as f:
        for epoch, acc in enumerate(train_acc, 1):
            f.write(json.dumps({"epoch": epoch, "train_acc1": acc, "val_acc1": 12.345, "seconds": seconds}) + "\n")


def test_saturation_is_the_first_epoch_whose_smoothed_value_stays_near_the_final():
    curve = [50.0 + 5 * e for e in range(10)] + [99.0, 100.0] * 10     # rises to 95 at epoch 10, then 99-100
    final, epoch = pilot_reading.saturation(curve, window=5, tolerance=1.5)
    assert final == pytest.approx(99.6)              # the last 5: 100, 99, 100, 99, 100
    assert epoch == 12                               # centred means: 96.6 at epoch 11, then >= 98.6 > 98.1
    # still rising: final 97 (the last 5), and only the centred means of epochs 27-30 reach 96
    assert pilot_reading.saturation([70.0 + e for e in range(30)], window=5, tolerance=1.0)[1] == 27
    dip = [100.0] * 20 + [90.0] * 3 + [100.0] * 7   # a late dip: saturation counts only from after it
    assert pilot_reading.saturation(dip, window=5, tolerance=1.0)[1] == 26     # epoch 25 still averages in 90


def test_the_table_says_whether_the_rule_holds_and_shows_no_validation_number(tmp_path, capsys):
    write_log(tmp_path / "early", [50.0 + 10 * e for e in range(5)] + [99.0, 100.0] * 10, seconds=3.0)
    write_log(tmp_path / "late", [60.0 + e for e in range(30)])
    code, out, _ = cli(pilot_reading.main, pilot_reading.get_args_parser(),
                       [str(tmp_path / "early"), str(tmp_path / "late")], capsys)
    assert code == 0
    early, late = [line for line in out.splitlines() if "/early" in line or "/late" in line]
    assert early.endswith("| 25 | 3.0 | 99.60 | 8 | 68 % | yes |")    # 97.6 at epoch 7, 99.4 at 8
    assert late.endswith("| no |") and "12.3" not in out


def test_a_folder_without_training_epochs_is_a_message(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = cli(pilot_reading.main, pilot_reading.get_args_parser(), [str(tmp_path / "empty")], capsys)
    assert code == 2 and "no training epochs" in err
