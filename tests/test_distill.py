"""scripts/distill_cifar100.sh (PAIRS / METHODS / SEEDS, the commands of a dry run, skip of finished runs),
its commands training a VGG pair on tiny digits, and scripts/distill_table.py on synthetic run folders."""
import dataclasses
import json
import math
import os
import shlex
import subprocess

import pytest

import dataset
import train_ctc
import train_vanilla
from helper.report.distill_results import CROSS_FAMILY, SAME_FAMILY
from scripts import distill_table
from tests.conftest import REPO_ROOT

LIGHT = {"MobileNetV2", "ShuffleV1", "ShuffleV2"}   # CRD trains these at lr 0.01, everything else at 0.05


def script(**env_vars):
    """(exit status, stdout lines, stderr) of a dry run of the distillation script."""
    env = {key: value for key, value in os.environ.items() if key not in ("PAIRS", "METHODS", "SEEDS", "EPOCHS")}
    result = subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "distill_cifar100.sh")],
                            env=dict(env, DRY_RUN="1", **env_vars), capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout.splitlines(), result.stderr


def commands(**env_vars):
    """The training commands a dry run prints, each as {flag: value} plus 'script'."""
    code, lines, err = script(**env_vars)
    assert code == 0, err
    parsed = []
    for line in lines:
        words = shlex.split(line)
        assert words[0] == "python", line
        flags = {"script": words[1]}
        for index, word in enumerate(words[2:], start=2):
            if word.startswith("-"):
                nxt = words[index + 1] if index + 1 < len(words) else ""
                flags[word] = None if nxt.startswith("--") or not nxt else nxt
        parsed.append(flags)
    return parsed


def method_of(command):
    return command["--note"].split("_trial_")[0]


def test_all_pairs_list_every_training_of_both_tables_once():
    runs = commands(PAIRS="all")
    teachers = [c["--model"] for c in runs if c["--note"] == "teacher"]
    assert sorted(teachers) == sorted({t for t, _ in {**SAME_FAMILY, **CROSS_FAMILY}})   # each teacher once
    students = [c["--model"] for c in runs if c["--note"] == "student"]
    assert sorted(students) == sorted({s for _, s in {**SAME_FAMILY, **CROSS_FAMILY}})
    distilled = {(c["--teacher_model"], c["--model"], method_of(c)) for c in runs if c["script"] == "train_ctc.py"}
    assert distilled == {(t, s, m) for t, s in {**SAME_FAMILY, **CROSS_FAMILY} for m in ("kd", "crd", "itrd")}
    assert len(runs) == 6 + 9 + 13 * 3
    for c in runs:   # CRD's protocol, explicit in every command; resumable
        assert c["--epochs"] == "240" and c["--step_decay_epochs"] == "150,180,210" and "--resume" in c
        assert c["--batch_size"] == "64" and c["--weight_decay"] == "5e-4" and c["--seed"] == c["--trial"] == "0"
        assert c["--learning_rate"] == ("0.01" if c["--model"] in LIGHT else "0.05")
    trained_at = {c["--model"]: index for index, c in enumerate(runs) if c["--note"] == "teacher"}
    for index, c in enumerate(runs):   # every student is taught by its teacher's final checkpoint, trained before
        if c["script"] == "train_ctc.py":
            teacher = c["--teacher_model"]
            assert c["--teacher"] == f"./save/model/{teacher}_cifar100_lr_0.05_trial_0_teacher/{teacher}_last.pth"
            assert c["--stage_two_epoch"] == "0" and trained_at[teacher] < index


def test_method_flags_follow_crd_and_itrd():
    kd, crd, itrd = commands(PAIRS="vgg13:vgg8", METHODS="kd,crd,itrd")[1:]
    assert (kd["--ce_weight"], kd["--kd_weight"], kd["--kd_T"], kd["-b"]) == ("0.1", "0.9", "4", "0.0")
    assert (crd["--stage_two_loss"], crd["-b"], crd["--nce_k"], crd["--nce_t"]) == ("crd", "0.8", "16384", "0.07")
    assert (itrd["--stage_two_loss"], itrd["-b"], itrd["--lambda_corr"], itrd["--lambda_mutual"],
            itrd["--alpha_it"]) == ("itrd", "1.0", "2.0", "1.0", "1.01")


@pytest.mark.parametrize("pairs, expected", [("same", SAME_FAMILY), ("cross", CROSS_FAMILY)])
def test_same_and_cross_select_one_table(pairs, expected):
    runs = commands(PAIRS=pairs, METHODS="itrd")
    assert [(c["--teacher_model"], c["--model"]) for c in runs if c["script"] == "train_ctc.py"] == list(expected)


def test_explicit_pairs_methods_and_seeds():
    runs = commands(PAIRS="vgg13:MobileNetV2,ResNet50:vgg8", METHODS="student,kd", SEEDS="0,1,2", EPOCHS="24")
    listed = [(c["--note"], c["--model"], c.get("--teacher_model"), c["--seed"], c["--learning_rate"]) for c in runs]
    assert listed == [("teacher", "vgg13", None, "0", "0.05")] + [
        entry for seed in "012" for entry in
        [("student", "MobileNetV2", None, seed, "0.01"), (f"kd_trial_{seed}", "MobileNetV2", "vgg13", seed, "0.01")]
    ] + [("teacher", "ResNet50", None, "0", "0.05")] + [
        entry for seed in "012" for entry in
        [("student", "vgg8", None, seed, "0.05"), (f"kd_trial_{seed}", "vgg8", "ResNet50", seed, "0.05")]]
    assert all(c["--epochs"] == "24" and c["--step_decay_epochs"] == "15,18,21" for c in runs)


def test_students_alone_need_no_teacher():
    runs = commands(PAIRS="resnet110:resnet20,resnet56:resnet20", METHODS="student", SEEDS="3")
    assert [(c["script"], c["--model"], c["--trial"]) for c in runs] == [("train_vanilla.py", "resnet20", "3")]


@pytest.mark.parametrize("env, message", [
    ({"PAIRS": "vgg13-vgg8"}, "PAIRS: 'vgg13-vgg8' is not <teacher>:<student>"),
    ({"METHODS": "kd,fitnet"}, "unknown method 'fitnet'"),
    ({"SEEDS": "0,one"}, "SEEDS: 'one'"),
    ({"EPOCHS": "0"}, "EPOCHS"),
])
def test_bad_choices_are_refused_before_anything_runs(env, message):
    code, lines, err = script(**env)
    assert code == 2 and lines == [] and message in err


def test_finished_runs_are_skipped_and_interrupted_ones_resumed(tmp_path):
    synthetic_run(tmp_path, "vgg13_cifar100_lr_0.05_trial_0_teacher", [50.0] * 240, model="vgg13")
    synthetic_run(tmp_path, "vgg8_cifar100_lr_0.05_trial_0_student", [50.0] * 100, finished=False, model="vgg8")
    code, lines, _err = script(PAIRS="vgg13:vgg8", METHODS="student,itrd", MODEL_PATH=str(tmp_path))
    assert code == 0
    assert lines[0] == f"== 1. done, skipped: {tmp_path}/vgg13_cifar100_lr_0.05_trial_0_teacher"
    assert "--note student" in lines[1] and "--resume" in lines[1]    # interrupted: continued
    assert "--note itrd_trial_0" in lines[2] and len(lines) == 3


def tiny_digits(monkeypatch, train=12, test=6):
    """digits_a cut to its first images, so a vgg13 epoch is one step."""
    full = dataset.DATASETS["digits_a"]

    def first_images(info, split, root, download):
        data, targets = full.load(info, split, root, download)
        keep = train if split == "train" else test
        return data[:keep], targets[:keep]
    monkeypatch.setitem(dataset.DATASETS, "digits_a", dataclasses.replace(full, load=first_images))


def test_vgg13_to_vgg8_trains_on_digits_with_the_scripts_commands(in_tmp, monkeypatch):
    """The dry run's commands, run in this process: teacher vgg13, then vgg8 by ITRD; then both are skipped."""
    tiny_digits(monkeypatch)
    env = dict(DATASET="digits_a", EPOCHS="1", NUM_WORKERS="0", PAIRS="vgg13:vgg8", METHODS="itrd",
               MODEL_PATH=str(in_tmp / "runs"), EXTRA_TRAIN_ARGS="--no_progress")
    code, lines, err = script(**env)
    assert code == 0, err
    for line in lines:
        words = shlex.split(line)
        module = {"train_vanilla.py": train_vanilla, "train_ctc.py": train_ctc}[words[1]]
        module.main(module.get_args_parser().parse_args(words[2:]))
    code, again, _err = script(**env)
    assert code == 0 and len(again) == 2 and all("done, skipped" in line for line in again)

    args = distill_table.get_args_parser().parse_args(
        ["--model_path", str(in_tmp / "runs"), "--dataset", "digits_a", "--epochs", "1", "--out_dir", "table"])
    cells = {(c["teacher"], c["student"], c["row"]): c for c in distill_table.main(args)}
    for row in ("teacher", "itrd"):
        assert cells["vgg13", "vgg8", row]["n"] == 1 and 0 <= cells["vgg13", "vgg8", row]["mean"] <= 100
    assert cells["vgg13", "vgg8", "kd"]["n"] == cells["vgg13", "vgg8", "student"]["n"] == 0   # not asked for
    with open(os.path.join(in_tmp, "runs", "vgg8_digits_a_Tvgg13_itrd_b1.0_itrd_trial_0", "log.txt")) as f:
        record = json.loads(f.readline())
    assert record["epoch"] == 1 and math.isfinite(record["train_itrd"])


def synthetic_run(root, name, accuracies, epochs=240, finished=True, **args):
    """A run folder as the training scripts write it: args.json, log.txt, <model>_last.pth when finished."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "args.json").write_text(json.dumps({"dataset": "cifar100", "epochs": epochs, **args}))
    lines = [{"epoch": epoch, "val_acc1": acc, "best_acc": max(accuracies[:epoch])}
             for epoch, acc in enumerate(accuracies, start=1)]
    (folder / "log.txt").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if finished:
        (folder / f"{args['model']}_last.pth").write_bytes(b"")


def markdown_cells(markdown):
    """{(teacher, student, row label): cell text} of both Markdown tables."""
    cells, pairs = {}, []
    for line in markdown.splitlines():
        parts = [part.strip() for part in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if parts and "<br>" in parts[1]:
            pairs = [tuple(part.split(" <br> ")) for part in parts[1:]]
        elif parts and not parts[0].startswith(":--"):
            cells.update({(*pair, parts[0]): text for pair, text in zip(pairs, parts[1:])})
    return cells


def test_table_from_synthetic_runs_published_measured_and_missing(tmp_path):
    runs = tmp_path / "model"
    synthetic_run(runs, "t", [70.0, 75.0], epochs=2, model="vgg13", note="teacher", seed=0)
    synthetic_run(runs, "s0", [72.0, 73.0], epochs=2, model="vgg8", note="student", seed=0)
    synthetic_run(runs, "s1", [74.5, 74.0], epochs=2, model="vgg8", note="student", seed=1)
    synthetic_run(runs, "kd", [71.0, 72.5], epochs=2, model="vgg8", note="kd_trial_0", seed=0, teacher_model="vgg13")
    synthetic_run(runs, "itrd_unfinished", [60.0], epochs=2, finished=False, model="vgg8", note="itrd_trial_0",
                  seed=0, teacher_model="vgg13")
    synthetic_run(runs, "crd_other_length", [99.0], epochs=1, model="vgg8", note="crd_trial_0", seed=0,
                  teacher_model="vgg13")
    synthetic_run(runs, "crd_other_note", [98.0, 98.0], epochs=2, model="vgg8", note="mine", seed=0,
                  teacher_model="vgg13")
    out = tmp_path / "out"
    args = distill_table.get_args_parser().parse_args(
        ["--model_path", str(runs), "--epochs", "2", "--out_dir", str(out)])
    distill_table.main(args)
    cells = markdown_cells((out / "distill_cifar100.md").read_text())
    assert len(cells) == 13 * 5
    assert [cells["vgg13", "vgg8", row] for row in ("Teacher", "Student", "KD", "CRD", "ITRD")] == [
        "74.64 / 75.00", "70.36 / 73.50 ± 0.71 (n=2)", "72.98 / 72.50", "73.94 / —", "74.93 / —"]
    assert cells["ResNet50", "vgg8", "Student"] == "70.36 / 73.50 ± 0.71 (n=2)"   # the same student alone
    assert cells["vgg13", "MobileNetV2", "Teacher"] == "74.64 / 75.00"           # the same teacher
    assert cells["wrn_40_2", "wrn_16_2", "ITRD"] == "76.12 / —"
    assert sum(text.endswith(" / —") for text in cells.values()) == 13 * 5 - 5

    csv_rows = (out / "distill_cifar100.csv").read_text().splitlines()
    assert csv_rows[0] == "table,teacher,student,row,published,mean,std,n,seeds"
    assert "same,vgg13,vgg8,student,70.36,73.5000,0.7071,2,0;1" in csv_rows
    assert "same,vgg13,vgg8,itrd,74.93,,,0," in csv_rows and len(csv_rows) == 1 + 13 * 5

    best = distill_table.main(distill_table.get_args_parser().parse_args(
        ["--model_path", str(runs), "--epochs", "2", "--out_dir", str(out), "--metric", "best"]))
    (student,) = [c for c in best if (c["table"], c["student"], c["row"]) == ("same", "vgg8", "student")]
    assert student["mean"] == pytest.approx(73.75)   # best epochs: 73.0 and 74.5


def test_table_refuses_a_missing_model_path(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        distill_table.run_cli(distill_table.main, distill_table.get_args_parser(),
                              ["--model_path", str(tmp_path / "nowhere")])
    assert exit_.value.code == 2 and "nowhere" in capsys.readouterr().err


def test_docs_table_is_the_scripts_output_before_any_run(tmp_path):
    """docs/distillation.md shows exactly the tables distill_table.py prints with nothing run yet."""
    (tmp_path / "model").mkdir()
    distill_table.main(distill_table.get_args_parser().parse_args(
        ["--model_path", str(tmp_path / "model"), "--out_dir", str(tmp_path)]))
    tables = (tmp_path / "distill_cifar100.md").read_text().split("\n\n", 1)[1].strip()
    with open(os.path.join(REPO_ROOT, "docs", "distillation.md")) as f:
        assert tables in f.read()
