"""Nothing silently wrong: rows know the checkpoint they came from, a damaged checkpoint is skipped by name,
derived data (CINIC-10's decode cache, feature caches) is keyed by what it came from, and epochs are parsed
strictly. Each test reproduces one case of the hostile-user probe (docs/run_folder.md says what is promised)."""
import glob
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import discriminability
import mine
import train_vanilla
from dataset import get_dataset
from dataset.registry import DataNotFoundError
from helper.core.checkpoint import file_sha1
from helper.sweep.results import FINGERPRINT, DamagedResultsError, ResultsCSV
from tests.fakedata import write_fake_cinic
from tests.helpers import cli, copy_run, read_rows

RESULTS = "discriminability_digits_a.csv"


def sweep(run_dir, capsys, *extra):
    """(exit status, stdout, stderr) of discriminability.py over the run's epochs 1.. (one k-means restart)."""
    argv = ["--ckpt_path", str(run_dir), "--start_epoch", "1", "--skip", "1", "--n_init", "1",
            "--num_workers", "0", "--no_progress", *extra]
    return cli(discriminability.main, discriminability.get_args_parser(), argv, capsys)


@pytest.fixture
def fresh(digits_run, tmp_path):
    """A copy of the session's digits_a run (ckpt_epoch_0..3.pth), its results files this test's own."""
    return copy_run(digits_run, tmp_path / "run")


def epochs_in(run_dir):
    return [int(row["epoch"]) for row in read_rows(os.path.join(run_dir, RESULTS))]


def rewrite(path, change):
    """Load a checkpoint, let `change(ckpt)` alter it in place, save it back."""
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)


# ------------------------------------------------------------------ case 1: rows know their checkpoint
def test_rows_record_their_checkpoint_and_a_replaced_checkpoint_is_recomputed(fresh, capsys):
    assert sweep(fresh, capsys)[0] == 0
    rows = read_rows(os.path.join(fresh, RESULTS))
    assert [row[FINGERPRINT] for row in rows] == [file_sha1(os.path.join(fresh, f"ckpt_epoch_{e}.pth"))
                                                  for e in (1, 2, 3)]
    shutil.copy2(os.path.join(fresh, "ckpt_epoch_3.pth"), os.path.join(fresh, "ckpt_epoch_2.pth"))  # by hand
    code, out, err = sweep(fresh, capsys)
    assert code == 0 and "2 checkpoints already in" in out
    stale = [line for line in err.splitlines() if "stale" in line]
    assert len(stale) == 1 and "epochs 2: the checkpoint file changed" in stale[0]
    latest = ResultsCSV(os.path.join(fresh, RESULTS), []).latest()
    assert latest[2][FINGERPRINT] == latest[3][FINGERPRINT] and latest[2]["nmi"] == latest[3]["nmi"]
    assert sweep(fresh, capsys)[1].count("3 checkpoints already in") == 1    # now up to date: nothing to do


def test_overwrite_moves_the_old_runs_results_aside(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    flags = ["--dataset", "digits_a", "--model", "resnet8", "--epochs", "1", "--save_freq", "1", "--batch_size",
             "128", "--num_workers", "0", "--no_progress", "--note", "integrity"]
    parser = train_vanilla.get_args_parser()
    run = train_vanilla.main(parser.parse_args(flags)).run_dir
    assert sweep(run, capsys, "--start_epoch", "0")[0] == 0
    old_rows = read_rows(os.path.join(run, RESULTS))
    train_vanilla.main(parser.parse_args(flags + ["--overwrite", "--seed", "7"]))
    assert "moved the old run's sweep results" in capsys.readouterr().out
    (aside,) = glob.glob(os.path.join(run, "before_overwrite_*"))
    assert read_rows(os.path.join(aside, RESULTS)) == old_rows
    assert sorted(os.listdir(aside)) == sorted([RESULTS, "discriminability_digits_a.args.json"])
    code, out, _ = sweep(run, capsys, "--start_epoch", "0")
    assert code == 0 and "already in" not in out
    new_rows = read_rows(os.path.join(run, RESULTS))
    assert [row["epoch"] for row in new_rows] == ["0", "1"]
    assert new_rows[1][FINGERPRINT] != old_rows[1][FINGERPRINT]      # the seed-7 run's weights


def test_a_file_written_before_the_fingerprint_column_is_read_and_continued(fresh, capsys):
    assert sweep(fresh, capsys, "--end_epoch", "2")[0] == 0
    path = os.path.join(fresh, RESULTS)
    rows = read_rows(path)
    columns = [c for c in rows[0] if c != FINGERPRINT]
    with open(path, "w") as f:                       # the same rows as an older version wrote them
        f.write("\n".join([",".join(columns)] + [",".join(row[c] for c in columns) for row in rows]) + "\n")
    code, out, _ = sweep(fresh, capsys)
    assert code == 0 and "2 checkpoints already in" in out and f"its {FINGERPRINT} column" in out
    again = read_rows(path)
    assert [row["epoch"] for row in again] == ["1", "2", "3"]
    assert [row["nmi"] for row in again[:2]] == [row["nmi"] for row in rows]     # old rows kept as they were
    assert [bool(row[FINGERPRINT]) for row in again] == [False, False, True]


# ------------------------------------------------------------------ cases 2 and 8: checkpoints checked before use
def test_a_nan_checkpoint_is_skipped_by_name_and_the_sweep_goes_on(fresh, capsys):
    def poison(ckpt):
        ckpt["model"]["conv1.weight"][0, 0, 0, 0] = float("nan")
    rewrite(os.path.join(fresh, "ckpt_epoch_2.pth"), poison)
    code, out, err = sweep(fresh, capsys)
    assert code == 1 and epochs_in(fresh) == [1, 3] and "Traceback" not in err
    assert "ckpt_epoch_2.pth holds NaN or infinite weights" in " ".join(err.split())
    assert err.splitlines()[-1].endswith("1 checkpoint skipped, not computed: ckpt_epoch_2.pth "
                                         "(NaN or infinite weights) (exit status 1)")


def test_mine_skips_a_nan_checkpoint_and_computes_the_later_ones(fresh, capsys):
    def poison(ckpt):
        ckpt["model"]["layer1.0.conv1.weight"].fill_(float("inf"))
    rewrite(os.path.join(fresh, "ckpt_epoch_1.pth"), poison)
    argv = ["--mode", "ty", "--dataset", "digits_a", "--ckpt_path", fresh, "--start_epoch", "1", "--skip", "1",
            "--end_epoch", "2", "--num_workers", "0", "--no_progress", "--batch_size", "128", "--hidden_size", "32",
            "--iter_num", "20", "--window", "5"]
    code, _, err = cli(mine.main, mine.get_args_parser(), argv, capsys)
    assert code == 1 and "ckpt_epoch_1.pth (NaN or infinite weights)" in err
    assert [row["epoch"] for row in read_rows(os.path.join(fresh, "mi_ty_digits_a.csv"))] == ["2"]


@pytest.mark.parametrize("damage, reason", [
    (lambda path: torch.save([1, 2, 3], path), "not a dict"),
    (lambda path: rewrite(path, lambda c: c["model"].update({k: 1 for k in c["model"]})), "weights are not tensors"),
    (lambda path: rewrite(path, lambda c: c.update(num_classes="five")), "bad 'num_classes'"),
    (lambda path: rewrite(path, lambda c: c.update(num_classes=10 ** 12)), "bad 'num_classes'"),
    (lambda path: rewrite(path, lambda c: c.update(arch="resnet9000")), "unknown 'arch'"),
    (lambda path: os.rename(path, path.replace("ckpt_epoch_2", "ckpt_epoch_1000000000000")),
     "its epoch is not a whole number up to 1000000"),
])
def test_an_odd_checkpoint_is_skipped_by_name_and_the_sweep_goes_on(fresh, capsys, damage, reason):
    damage(os.path.join(fresh, "ckpt_epoch_2.pth"))
    code, _, err = sweep(fresh, capsys)
    assert code == 1 and epochs_in(fresh) == [1, 3] and "Traceback" not in err
    assert err.splitlines()[-1].endswith(f"1 checkpoint skipped, not computed: "
                                         f"{'ckpt_epoch_1000000000000.pth' if 'epoch' in reason else 'ckpt_epoch_2.pth'}"
                                         f" ({reason}) (exit status 1)")


def test_a_far_end_epoch_selects_only_the_files_present(fresh, capsys):
    code, out, err = sweep(fresh, capsys, "--end_epoch", "1000000000000")
    assert code == 0 and epochs_in(fresh) == [1, 2, 3] and "missing" not in out + err


def test_missing_epochs_are_counted_not_listed_in_full(fresh, capsys):
    shutil.copy(os.path.join(fresh, "ckpt_epoch_3.pth"), os.path.join(fresh, "ckpt_epoch_999999.pth"))
    code, out, _ = sweep(fresh, capsys, "--start_epoch", "3")
    assert code == 0 and epochs_in(fresh) == [3, 999999]
    assert "missing checkpoints (skipped): epochs 4, 5, " in out and "and 999975 more" in out


# ------------------------------------------------------------------ cases 4 and 9: result cells parsed strictly
@pytest.mark.parametrize("column, text", [("nmi", "abc"), ("recall_at_1", "1_0"), ("epoch", "²"), ("epoch", "٣")])
def test_a_bad_cell_is_refused_by_file_and_line_not_counted_as_done(fresh, capsys, column, text):
    assert sweep(fresh, capsys, "--end_epoch", "2")[0] == 0
    path = os.path.join(fresh, RESULTS)
    rows = read_rows(path)
    rows[1][column] = text
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join([",".join(rows[0])] + [",".join(row.values()) for row in rows]) + "\n")
    code, _, err = sweep(fresh, capsys)
    assert code == 2 and "Traceback" not in err and f"{RESULTS} is damaged at line 3" in " ".join(err.split())
    with pytest.raises(DamagedResultsError, match=f"{column!r} value|epoch {text!r}"):
        ResultsCSV(path, []).rows() if column == "epoch" else ResultsCSV(path, [], numeric=[column]).rows()


# ------------------------------------------------------------------ cases 3 and 7: CINIC-10's decode cache and images
def test_cinic_cache_is_rebuilt_when_its_images_are_replaced(tmp_path):
    base = write_fake_cinic(tmp_path, n_per_class=2, splits=("valid",))
    first = get_dataset("cinic10", split="valid", root=str(tmp_path))
    assert np.asarray(first.data).any()
    for path in glob.glob(os.path.join(base, "valid", "*", "*.png")):
        Image.new("RGB", (32, 32)).save(path)                          # every image black, same count
    again = get_dataset("cinic10", split="valid", root=str(tmp_path))
    assert len(again) == len(first) and not np.asarray(again.data).any()


def test_cinic_unreadable_image_and_missing_class_folder_are_named(tmp_path):
    base = write_fake_cinic(tmp_path, n_per_class=1, splits=("valid",))
    empty = os.path.join(base, "valid", "cat", "valid_0.png")
    open(empty, "wb").close()
    with pytest.raises(DataNotFoundError, match=f"image {empty} could not be read"):
        get_dataset("cinic10", split="valid", root=str(tmp_path))
    shutil.rmtree(os.path.join(base, "valid", "cat"))
    with pytest.raises(DataNotFoundError, match=f"class folder {os.path.join(base, 'valid', 'cat')} "):
        get_dataset("cinic10", split="valid", root=str(tmp_path))


# ------------------------------------------------------------------ case 10: feature caches
@pytest.mark.parametrize("replacement", [torch.zeros(3), [torch.zeros(7, 2), torch.zeros(7, dtype=torch.long)],
                                         [torch.zeros(5, 4), torch.zeros(5, dtype=torch.long), torch.zeros(1)]])
def test_a_feature_cache_entry_of_another_shape_is_recomputed(fresh, tmp_path, capsys, replacement):
    cache = str(tmp_path / "features")
    assert sweep(fresh, capsys, "--end_epoch", "1", "--cache_dir", cache)[0] == 0
    first = read_rows(os.path.join(fresh, RESULTS))
    (entry,) = glob.glob(os.path.join(cache, "*.pt"))
    torch.save(replacement, entry)
    code, _, err = sweep(fresh, capsys, "--end_epoch", "1", "--cache_dir", cache, "--force")
    assert code == 0 and f"the feature cache file {entry} cannot be used" in " ".join(err.split())
    assert read_rows(os.path.join(fresh, RESULTS))[-1]["nmi"] == first[0]["nmi"]


def test_cache_dir_naming_a_file_is_one_paragraph(fresh, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    code, _, err = sweep(fresh, capsys, "--end_epoch", "1", "--cache_dir", str(tmp_path / "a_file"))
    flat = " ".join(err.split())
    assert code == 2 and "Traceback" not in err and f"--cache_dir {tmp_path / 'a_file'} cannot take" in flat
    assert "is a regular file" in flat or "not a folder" in flat

