"""scripts/mine_memorisation.sh refits the target's MINE bounds (every row and held out) on chosen checkpoints
of finished runs into a separate folder, and scripts.memorisation_table reads them back per epoch."""
import os
import subprocess
import sys

from scripts import memorisation_table
from tests.helpers import REPO_ROOT, cli, read_rows

FITS = ["mi_xt_digits_b", "mi_ty_digits_b", "mi_xt_digits_b_holdout", "mi_ty_digits_b_holdout"]


def refit(run, out, **extra):
    env = dict(os.environ, NO_SETUP="1", PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
               ITERS="6", START="1", SKIP="2", END="3", BATCH="32", HIDDEN="8", WINDOW="3", JOBS="1", OUT=str(out),
               **extra)
    return subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "mine_memorisation.sh"), run], env=env,
                          capture_output=True, text=True, timeout=600)


def test_refits_go_to_their_own_folder_resume_and_make_a_table(digits_run, tmp_path, capsys):
    before = sorted(os.listdir(digits_run))
    first = refit(digits_run, tmp_path / "refits")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    copy = tmp_path / "refits" / os.path.basename(digits_run)
    for stem in FITS:
        rows = read_rows(copy / f"{stem}.csv")
        assert [(r["epoch"], r["iters"]) for r in rows] == [("1", "6"), ("3", "6")], stem
    assert all(float(r["mi_train"]) == float(r["mi_train"]) for r in read_rows(copy / "mi_xt_digits_b_holdout.csv"))
    assert sorted(os.listdir(digits_run)) == before            # the run's own folder gains no file
    assert os.stat(copy / "ckpt_epoch_1.pth").st_ino == os.stat(os.path.join(digits_run, "ckpt_epoch_1.pth")).st_ino

    stamps = {stem: os.stat(copy / f"{stem}.csv").st_mtime_ns for stem in FITS}
    again = refit(digits_run, tmp_path / "refits")
    assert again.returncode == 0 and {s: os.stat(copy / f"{s}.csv").st_mtime_ns for s in FITS} == stamps

    code, out, _ = cli(memorisation_table.main, memorisation_table.get_args_parser(),
                       ["--group", "vanilla", str(copy), "--target", "digits_b"], capsys)
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| vanilla |")]
    assert [line.split(" | ")[1:4] for line in rows] == [["I(X;T)", "1", "6"], ["I(X;T)", "3", "6"],
                                                        ["I(T;Y)", "1", "6"], ["I(T;Y)", "3", "6"]]
    assert all(line.endswith("/1 |") for line in rows)


def test_a_folder_without_held_out_fits_or_args_is_a_message(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = cli(memorisation_table.main, memorisation_table.get_args_parser(),
                       ["--group", "vanilla", str(tmp_path / "empty")], capsys)
    assert code == 2 and "no epoch has held-out fits" in err
    result = refit(str(tmp_path / "empty"), tmp_path / "refits")
    assert result.returncode != 0 and "is not a run folder" in result.stderr
