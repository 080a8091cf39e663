"""scripts/cpu_experiment.sh end to end at a tiny size (2 seeds x {vanilla, CTC}, 2 epochs, every sweep, the
results table, a rerun that recomputes nothing) and scripts/run_steps.py, which runs each run's steps in one
process."""
import glob
import os
import subprocess
import sys
import time

from scripts import run_steps, step_times
from tests.conftest import REPO_ROOT
from tests.helpers import read_rows

RUNS = ["resnet8_digits_a_lr_0.05_trial_0_vanilla", "resnet8_digits_a_lr_0.05_trial_1_vanilla",
        "resnet8_digits_a_a0.5_b1.0_ctc_s0", "resnet8_digits_a_a0.5_b1.0_ctc_s1"]
RESULTS = ["transfer_digits_b_linear_cv3", "discriminability_digits_a", "mi_xt_digits_a", "mi_ty_digits_a",
           "mi_xt_digits_b", "mi_ty_digits_b", "mi_xt_digits_b_holdout", "mi_ty_digits_b_holdout"]


def test_cpu_experiment_end_to_end_then_a_rerun_recomputes_nothing(tmp_path):
    env = dict(os.environ, NO_SETUP="1", WORKDIR=str(tmp_path), PATH=f"{os.path.dirname(sys.executable)}:"
               f"{os.environ['PATH']}", SEEDS="2", EPOCHS="2", SAVE_FREQ="1", STAGE_TWO="1", NCE_K="32", CV="3",
               PROBE_EPOCHS="3", MINE_XT_ITERS="10", MINE_TY_ITERS="10", MINE_BATCH="64", MINE_HIDDEN="16",
               MINE_WINDOW="5", JOBS="2")
    script = os.path.join(REPO_ROOT, "scripts", "cpu_experiment.sh")
    first = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for run in RUNS:
        for name in RESULTS:
            rows = read_rows(tmp_path / "save/model" / run / f"{name}.csv")
            assert [r["epoch"] for r in rows] == ["0", "1", "2"], (run, name)
        assert all(r["folds"] == "3" for r in read_rows(tmp_path / "save/model" / run / f"{RESULTS[0]}.csv"))
        held_out = read_rows(tmp_path / "save/model" / run / "mi_xt_digits_b_holdout.csv")
        assert all(r["mi_train"] and r["best_step"] for r in held_out)   # both bounds, side by side
    out = tmp_path / "figures/cpu_experiment"
    table = (out / "results_table.md").read_text()
    assert "| vanilla | 2 |" in table and "| ctc | 2 |" in table and "| ctc | " in table.split("minus vanilla")[1]
    assert "not measured" not in table                 # every quantity came from the runs
    assert len(glob.glob(str(out / "*.png"))) >= 3
    files = sorted(glob.glob(str(tmp_path / "save/model/*/*.csv")) + glob.glob(str(tmp_path / "save/model/*/*.pth")))
    stamps = {path: os.stat(path).st_mtime_ns for path in files}

    env["PLOT"] = "0"                                   # the figures were checked above; redrawing them costs time
    again = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    logs = "".join(open(path).read() for path in glob.glob(str(tmp_path / "save/logs/cpu_experiment/*.log")))
    assert logs.count("already finished") == 4 and logs.count("0 to go") == 4 * len(RESULTS)
    assert {path: os.stat(path).st_mtime_ns for path in files} == stamps      # nothing rewritten
    assert (out / "results_table.md").read_text() == table
    assert len((out / "timings.tsv").read_text().splitlines()) == 2


def test_run_steps_splits_commands_and_refuses_other_programs(capsys):
    assert run_steps.split_commands(["a.py", "-x", "1", "::", "b.py", "::"]) == [["a.py", "-x", "1"], ["b.py"]]
    assert run_steps.main(["transfer.py", "--help", "::", "rm", "-rf", "x"]) == 2
    assert "got rm" in capsys.readouterr().err


def test_run_steps_stops_at_the_first_failing_command(capsys):
    status = run_steps.main(["transfer.py", "--ckpt_path", "nowhere", "--no_progress", "::",
                             "discriminability.py", "--help"])
    out, err = capsys.readouterr()
    assert status == 2 and "nowhere" in err and "steps after it did not run" in err
    assert "== discriminability.py" not in out


def test_run_steps_records_each_finished_step_and_step_times_sums_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STEP_TIMES", str(tmp_path / "times"))
    start = time.time()
    assert run_steps.main(["mine.py", "--help", "::", "mine.py", "--mode", "xt", "--dataset", "digits_b",
                           "--holdout", "0.5", "--help", "::", "discriminability.py", "--help"]) == 0
    rows = step_times.read_timings(str(tmp_path / "times"))
    assert [name for name, _, _ in rows] == ["mine", "mine xt digits_b holdout", "discriminability"]
    assert all(seconds >= 0 and start - 0.01 <= end <= time.time() + 0.01 for _, seconds, end in rows), rows
    lines = step_times.split_table([("mine xt a", 3.0, 103.0), ("train", 1.0, 100.0), ("mine xt a", 5.0, 105.0)],
                                   start=99.0, end=111.0)
    assert lines[1].split() == ["mine", "xt", "a", "2", "8.0", "4.0", "88.9%"]
    assert lines[2].split() == ["train", "1", "1.0", "1.0", "11.1%"]
    assert lines[-1] == "wall time 12 s: runs 6 s, then results table and figures 6 s"
    capsys.readouterr()
    assert step_times.main([str(tmp_path / "empty"), "--start", "0"]) == 1
    assert "no step timings" in capsys.readouterr().err
