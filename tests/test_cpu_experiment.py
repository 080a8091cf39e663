"""scripts/cpu_experiment.sh end to end at a tiny size (2 seeds x {vanilla, CTC}, 2 epochs, every sweep, the
results table, a rerun that recomputes nothing), the commands of its DATA=digits and DATA=fashion configurations
(a dry run), and scripts/run_steps.py, which runs each run's steps in one process."""
import glob
import os
import subprocess
import sys
import time

import pytest

from scripts import run_steps, step_times
from tests.conftest import REPO_ROOT
from tests.fakedata import write_fake_fashion_mnist
from tests.helpers import dry_run, read_rows

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


FASHION_RESULTS = ["transfer_fashion_b_linear_cv3", "transfer_digits_b_linear_cv3", "discriminability_fashion_a",
                   "discriminability_fashion_b", "discriminability_digits_b", "mi_xt_fashion_a", "mi_ty_fashion_a",
                   "mi_xt_fashion_b", "mi_ty_fashion_b", "mi_xt_fashion_b_holdout", "mi_ty_fashion_b_holdout"]


def test_fashion_end_to_end_on_idx_files_then_a_rerun_recomputes_nothing(tmp_path):
    """DATA=fashion on Fashion-MNIST IDX files written in torchvision's layout (the real loaders read them), with
    the per-class source subset, both targets, the three measures and both results tables."""
    write_fake_fashion_mnist(tmp_path / "data", n_train_per_class=8, n_test_per_class=6)
    env = dict(os.environ, NO_SETUP="1", WORKDIR=str(tmp_path), DATA_FOLDER=str(tmp_path / "data"),
               PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}", DATA="fashion", SOURCE_PER_CLASS="6",
               TARGET_PER_CLASS="4",
               SEEDS="2", EPOCHS="2", SAVE_FREQ="1", STAGE_TWO="1", NCE_K="16", CV="3", PROBE_EPOCHS="2",
               MINE_XT_ITERS="5", MINE_TY_ITERS="5", MINE_BATCH="32", MINE_HIDDEN="8", MINE_WINDOW="3", JOBS="2")
    script = os.path.join(REPO_ROOT, "scripts", "cpu_experiment.sh")
    first = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run = tmp_path / "save/model/resnet8_fashion_a_lr_0.05_trial_1_vanilla"
    assert '"train_per_class": 6' in (run / "args.json").read_text()
    for name in FASHION_RESULTS:
        rows = read_rows(run / f"{name}.csv")
        assert [r["epoch"] for r in rows] == ["0", "1", "2"], name
    assert '"target_per_class": 4' in (run / "transfer_fashion_b_linear_cv3.args.json").read_text()
    target = read_rows(run / "discriminability_fashion_b.csv")
    assert all(float(r["nc1"]) >= 0 and 1 <= float(r["effective_rank"]) <= 64 and float(r["coding_rate"]) > 0
               for r in target)
    out = tmp_path / "figures/cpu_experiment_fashion"
    for table in ("results_table.md", "results_table_digits_b.md"):
        assert "| vanilla | 2 |" in (out / table).read_text()
    assert "Spearman" in (out / "results_table.md").read_text()
    stamps = {path: os.stat(path).st_mtime_ns for path in glob.glob(str(tmp_path / "save/model/*/*.csv"))}

    env["PLOT"] = "0"
    again = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert {path: os.stat(path).st_mtime_ns for path in stamps} == stamps

def planned(tmp_path, **env):
    """The dry run's commands: per training run, [(program, {flag: value})] of its steps; then the other calls."""
    runs, others = [], []
    tmp_path.mkdir(parents=True, exist_ok=True)
    for call in dry_run("cpu_experiment.sh", tmp_path, WORKDIR=str(tmp_path), JOBS="1", **env):
        if not call.startswith("-m scripts.run_steps "):
            others.append(call)
            continue
        steps = []
        for command in call[len("-m scripts.run_steps "):].split(" :: "):
            program, *words = command.split()
            flags = {}
            for i, word in enumerate(words):
                if word.startswith("-"):
                    flags[word] = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else True
            steps.append((program, flags))
        runs.append(steps)
    return runs, others


def step_names(steps):
    """(program, the data set it reads) of each step: the shape of a run's work."""
    return [(program, flags.get("--target_dataset") or flags.get("--dataset")) + (("--holdout" in flags),)
            for program, flags in steps]


def test_digits_is_the_default_and_its_commands_are_the_digits_protocol(tmp_path):
    calls = {}
    for name, env in (("default", {}), ("digits", {"DATA": "digits"})):
        (tmp_path / name).mkdir()
        calls[name] = dry_run("cpu_experiment.sh", tmp_path / name, WORKDIR=str(tmp_path / name), JOBS="1", **env)
    assert calls["default"] == calls["digits"]
    runs, others = planned(tmp_path / "again")
    assert len(runs) == 6
    for steps in runs:
        assert step_names(steps)[1:] == [
            ("transfer.py", "digits_b", False), ("discriminability.py", "digits_a", False),
            ("mine.py", "digits_a", False), ("mine.py", "digits_a", False), ("mine.py", "digits_b", False),
            ("mine.py", "digits_b", False), ("mine.py", "digits_b", True), ("mine.py", "digits_b", True)]
        train = steps[0][1]
        assert (train["--dataset"], train["--epochs"], train["--save_freq"]) == ("digits_a", "90", "3")
        assert "--train_per_class" not in train and "--augment" not in train
        assert not any("--cache_dir" in flags or "--target_per_class" in flags for _, flags in steps[1:])
    assert len(others) == 2 and others[1].split()[0].endswith("plot.py")
    assert others[0].startswith("-m scripts.results_table")
    assert others[0].endswith("--target digits_b --out figures/cpu_experiment/results_table.md")


def test_fashion_runs_its_protocol_on_two_targets_with_the_three_measures(tmp_path):
    runs, others = planned(tmp_path, DATA="fashion")
    assert len(runs) == 6
    for steps in runs:
        assert step_names(steps)[1:] == [
            ("transfer.py", "fashion_b", False), ("transfer.py", "digits_b", False),
            ("discriminability.py", "fashion_a", False), ("discriminability.py", "fashion_b", False),
            ("discriminability.py", "digits_b", False),
            ("mine.py", "fashion_a", False), ("mine.py", "fashion_a", False), ("mine.py", "fashion_b", False),
            ("mine.py", "fashion_b", False), ("mine.py", "fashion_b", True), ("mine.py", "fashion_b", True)]
        program, train = steps[0]
        assert (train["--dataset"], train["--train_per_class"], train["--epochs"], train["--save_freq"],
                train["--augment"]) == ("fashion_a", "200", "60", "4", "none")
        assert all(flags["--cv"] == "5" for program, flags in steps if program == "transfer.py")
        probes = {flags["--target_dataset"]: flags.get("--target_per_class") for program, flags in steps
                  if program == "transfer.py"}
        assert probes == {"fashion_b": "200", "digits_b": None}     # the large target's probe on a subset
        assert {flags["--cache_dir"] for _, flags in steps[1:]} == {"save/features"}
    programs = [steps[0][0] for steps in runs]
    assert programs == ["train_vanilla.py", "train_ctc.py"] * 3
    ctc = [steps[0][1] for steps in runs if steps[0][0] == "train_ctc.py"]
    assert {(c["--stage_two_epoch"], c["-a"], c["--nce_t"]) for c in ctc} == {("40", "0.5", "0.10")}   # last third
    assert sorted(c["--seed"] for c in ctc) == ["0", "1", "2"]
    tables = [c for c in others if c.startswith("-m scripts.results_table")]
    assert len(tables) == 2
    assert "--transfer transfer_fashion_b_linear_cv5 --source fashion_a --target fashion_b" in tables[0]
    assert "--transfer transfer_digits_b_linear_cv5 --source fashion_a --target digits_b" in tables[1]
    assert tables[1].endswith("--out figures/cpu_experiment_fashion/results_table_digits_b.md")
    assert others[-1].endswith("--out figures/cpu_experiment_fashion")

    runs, _ = planned(tmp_path / "pilot", DATA="fashion", SOURCE_PER_CLASS="600", EPOCHS="45", TARGET2="")
    assert {steps[0][1]["--train_per_class"] for steps in runs} == {"600"}
    assert {steps[0][1]["--stage_two_epoch"] for steps in runs if steps[0][0] == "train_ctc.py"} == {"30"}
    assert not any(flags.get("--target_dataset") == "digits_b" or flags.get("--dataset") == "digits_b"
                   for steps in runs for _, flags in steps)


@pytest.mark.parametrize("env, message", [
    ({"DATA": "fashion", "SCALE": "gpu"}, "DATA=fashion is a SCALE=cpu"),
    ({"DATA": "cifar"}, "DATA must be digits or fashion"),
    ({"DATA": "fashion", "SOURCE_PER_CLASS": "many"}, "SOURCE_PER_CLASS must be")])
def test_bad_data_configurations_are_refused(tmp_path, env, message):
    result = subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "cpu_experiment.sh")], capture_output=True,
                            text=True, env=dict(os.environ, NO_SETUP="1", WORKDIR=str(tmp_path), **env), timeout=60)
    assert result.returncode == 2 and message in result.stderr


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
