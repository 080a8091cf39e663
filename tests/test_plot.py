"""plot.py on synthetic result files of every kind, written with the sweeps' own columns and argument records.

Run folders carry an args.json made by the training scripts' parsers; each results CSV carries the
.args.json its sweep's parser and run_sweep would write, so titles and seed groups are read as in real use.
"""
import json
import os

import matplotlib.image as mpimg
import pytest

import discriminability
import mine
import plot
import train_ctc
import train_vanilla
import transfer
from helper.report import figures
from helper.core.checkpoint import plain
from helper.report.results import FACTS, QUANTITIES, find_results, flags_from_name
from helper.report.seed_groups import group_label, group_runs, seed_band
from helper.cli.sweep import run_flags
from helper.sweep.results import KIND, KINDS, ResultsCSV, kind_of, write_args_json
from tests.helpers import cli

EPOCHS = [2, 4, 6, 8, 10]


def make_run(root, script, argv):
    """A run folder named as its training script names it, holding that script's args.json."""
    args = script.get_args_parser().parse_args(argv)
    run = root / script.run_name(args)
    run.mkdir(parents=True)
    (run / "args.json").write_text(json.dumps(plain(vars(args))))
    return run


def sweep_file(run, name, fields, rows, script, argv):
    """A results CSV as `script` writes it: its columns and, beside it, its resolved arguments."""
    args = script.get_args_parser().parse_args(["--ckpt_path", str(run)] + argv)
    if script is transfer:
        args = transfer.settled_flags(args, "cpu")
    results = ResultsCSV(str(run / name), fields)
    for row in rows:
        results.append(row)
    write_args_json(results, run_flags(args))


def fill_run(run, level):
    """Results of every kind: transfer (linear, bntrain, finetune), discriminability, MI (mine, infonce, holdout)."""
    t = ["--source_dataset", "digits_a", "--target_dataset", "digits_b", "--model", "resnet8", "--epoch", "30"]
    for name, extra in (("transfer_digits_b_linear.csv", []),
                        ("transfer_digits_b_linear_bntrain.csv", ["--bn_mode", "train"]),
                        ("transfer_digits_b_finetune.csv", ["--mode", "finetune"])):
        sweep_file(run, name, KIND["transfer"].columns,
                   [{"epoch": e, "final_acc": level + e, "best_acc_on_eval": level + e + 1, "best_epoch": 30,
                     "source_acc": 90 + e / 2, "seconds": 1.0,
                     "param_transferability": 0.01 * e if "finetune" in name else None} for e in EPOCHS],
                   transfer, t + extra)
    sweep_file(run, "discriminability_digits_a.csv", KIND["discriminability"].columns,
               [{"epoch": e, "recall_at_1": 50 + e, "nmi": 0.05 * e, "source_acc": 90.0, "seconds": 1.0,
                 "nc1": level / e, "effective_rank": 20 - e, "coding_rate": level / 10 + e} for e in EPOCHS],
               discriminability, ["--dataset", "digits_a"])
    for mode in ("xt", "ty"):
        for dataset in ("digits_a", "digits_b"):
            for estimator, holdout in (("mine", None), ("infonce", None), ("mine", 0.5)):
                if dataset == "digits_b" and (estimator, holdout) != ("mine", None) or (estimator, mode) == (
                        "infonce", "ty"):
                    continue        # the variants on one data set and quantity are enough; the figures stay fast
                m = ["--mode", mode, "--dataset", dataset, "--estimator", estimator]
                m += ["--holdout", str(holdout)] if holdout else []
                args = mine.get_args_parser().parse_args(["--ckpt_path", str(run)] + m)
                rows = [{"epoch": e, "mi": level / 50 + 0.1 * e, "std": 0.05, "nan_steps": 0, "iters": 300,
                         "batch_size": 256, "seconds": 1.0, "estimator": estimator, "layer": -1,
                         "mi_train": (level / 50 + 0.2 * e) if holdout else None,
                         "best_step": 200 if holdout else None} for e in EPOCHS]
                sweep_file(run, KIND["mi"].file_name(vars(args)), KIND["mi"].columns, rows,
                           mine, m)


@pytest.fixture
def runs(tmp_path):
    vanilla = make_run(tmp_path, train_vanilla, ["--dataset", "digits_a", "--model", "resnet8", "--epochs", "10",
                                                 "--note", "vanilla"])
    ctc = make_run(tmp_path, train_ctc, ["--dataset", "digits_a", "--model", "resnet8", "--epochs", "10",
                                         "--stage_two_epoch", "6", "--note", "ctc"])
    fill_run(vanilla, 60)
    fill_run(ctc, 70)
    return vanilla, ctc


def run_plot(argv, capsys):
    return cli(plot.main, plot.get_args_parser(), argv, capsys)


@pytest.fixture
def unsaved(monkeypatch):
    """plot.main without writing PNG and PDF files (seconds each): the figures are built and closed."""
    def close(fig, out, name):
        figures.plt.close(fig)
        return os.path.join(out, f"{name}.png")
    monkeypatch.setattr(plot, "save", close)


def flat(text):
    return "".join(text.split())      # the error paragraph is wrapped at 100 columns, inside paths too


def axes_of(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_every_kind_is_drawn_with_titles_from_the_argument_records(runs, tmp_path, capsys):
    out = tmp_path / "fig"
    code, text, err = run_plot([str(r) for r in runs] + ["--out", str(out), "--labels", "vanilla,ctc"], capsys)
    assert code == 0, err
    for name in ("transfer", "discriminability", "compression", "information", "information_plane"):
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000, name
    assert "5 figures" in text and "left out of" not in text       # every run has a curve in every panel
    image = mpimg.imread(out / "discriminability.png")
    assert image.shape[1] > image.shape[0]                            # Recall@1 and NMI side by side
    series = figures.load_series([[r] for r in runs], ["vanilla", "ctc"])
    titles = [ax.get_title() for ax in axes_of(figures.transfer_figure(series))]
    assert titles[:3] == ["transfer to digits_b (test split)\nlinear probe (epochs 30, lr 0.4)",
                          "transfer to digits_b (test split)\nlinear probe, BatchNorm in train mode (the original's) "
                          "(epochs 30, lr 0.4)",
                          "transfer to digits_b (test split)\nfine-tuning (epochs 30, lr 0.01)"]
    assert titles[3:] == ["parameter distance, fine-tuned on digits_b (test split)",
                          "source accuracy on digits_a (as each checkpoint records it)"]
    disc = axes_of(figures.discriminability_figure(series))
    assert [ax.get_title() for ax in disc] == ["Recall@1 on digits_a (test split)", "NMI of k-means clusters on "
                                               "digits_a (test split)"]
    assert [ax.get_ylabel() for ax in disc] == ["Recall@1 [%]", "NMI of k-means clusters [0-1]"]
    compression = axes_of(figures.compression_figure(series))
    assert [ax.get_title() for ax in compression] == [
        "within-class variability NC1 on digits_a (test split)",
        "effective rank of the features on digits_a (test split)", "coding rate (ε² = 0.5) on digits_a (test split)"]
    assert [ax.get_yscale() for ax in compression] == ["log", "linear", "linear"]
    nc1_line = next(ln for ln in compression[0].get_lines() if ln.get_label() == "vanilla")
    assert list(nc1_line.get_ydata()) == pytest.approx([60 / e for e in EPOCHS])
    info_figure = figures.information_figure(series)
    info = axes_of(info_figure)
    # infonce is an estimator, not part of the data set's name; each gets its own row, I(X;T) above I(T;Y)
    assert [ax.get_title() for ax in info] == [
        "I(X;T) on digits_a (test split)", "I(X;T) on digits_b (test split)",
        "I(X;T) on digits_a (test split)\nheld-out 50% of rows", "I(X;T) on digits_a (test split)\ninfonce bound",
        "I(T;Y) on digits_a (test split)", "I(T;Y) on digits_b (test split)",
        "I(T;Y) on digits_a (test split)\nheld-out 50% of rows"]
    assert info[1].get_ylabel() == "I(X;T) on digits_b [nats]"
    # the variants exist on digits_a only: packed two to a row, only the last cell is empty (a row per
    # quantity and variant would leave three)
    assert len(info_figure.axes) == 8 and not info_figure.axes[-1].get_visible()


def test_curves_carry_source_accuracy_std_bands_and_the_stage_two_marker(runs):
    series = figures.load_series([[r] for r in runs], ["vanilla", "ctc"])
    assert [s.stage_two for s in series] == [None, 6]    # read from the CTC run's args.json
    source = axes_of(figures.transfer_figure(series))[-1]
    (line, _), = [(ln, ln.get_label()) for ln in source.get_lines() if ln.get_label() == "vanilla"]
    assert list(line.get_xdata()) == EPOCHS and list(line.get_ydata()) == [90 + e / 2 for e in EPOCHS]
    marker = [ln for ln in source.get_lines() if ln.get_label().startswith("ctc: stage two")]
    assert len(marker) == 1 and list(marker[0].get_xdata()) == [6.5, 6.5]
    held_out = next(ax for ax in axes_of(figures.information_figure(series))
                    if ax.get_title() == "I(X;T) on digits_a (test split)\nheld-out 50% of rows")
    styles = {ln.get_label(): (ln.get_linestyle(), list(ln.get_ydata())) for ln in held_out.get_lines()}
    assert styles["vanilla"] == ("-", pytest.approx([1.2 + 0.1 * e for e in EPOCHS]))
    assert styles["vanilla (fitted rows)"] == ("--", pytest.approx([1.2 + 0.2 * e for e in EPOCHS]))
    band = held_out.collections[0].get_paths()[0].vertices[:, 1]      # MINE's std: +- 0.05 around the estimate
    assert band.min() == pytest.approx(1.2 + 0.2 - 0.05) and band.max() == pytest.approx(1.2 + 1.0 + 0.05)


def test_information_plane_colours_runs_and_sizes_epochs(runs):
    series = figures.load_series([[r] for r in runs], ["vanilla", "ctc"])
    planes = axes_of(figures.information_plane_figure(series))
    assert [ax.get_title() for ax in planes] == [   # infonce has no I(T;Y) partner here: no plane
        "information plane on digits_a (test split)", "information plane on digits_b (test split)",
        "information plane on digits_a (test split)\nheld-out 50% of rows"]
    points = planes[0].collections
    assert [tuple(c.get_facecolor()[0][:3]) for c in points] != [tuple(points[0].get_facecolor()[0][:3])] * 2
    sizes = points[0].get_sizes()
    assert sizes[0] < sizes[-1] and list(sizes) == sorted(sizes)          # the epoch grows with marker size


def test_seed_groups_come_from_saved_arguments(tmp_path):
    base = ["--dataset", "digits_a", "--model", "resnet8", "--epochs", "10"]
    a0 = make_run(tmp_path, train_vanilla, base + ["--trial", "0", "--seed", "0", "--num_workers", "0"])
    a1 = make_run(tmp_path, train_vanilla, base + ["--trial", "1", "--seed", "1", "--num_workers", "2"])
    other_lr = make_run(tmp_path, train_vanilla, base + ["--trial", "2", "--seed", "2", "--learning_rate", "0.1"])
    c0 = make_run(tmp_path, train_ctc, base + ["--stage_two_epoch", "6", "--seed", "0", "--note", "s0"])
    c1 = make_run(tmp_path, train_ctc, base + ["--stage_two_epoch", "6", "--seed", "1", "--note", "s1"])
    assert group_runs([str(p) for p in (a0, c0, other_lr, a1, c1)]) == [[str(a0), str(a1)], [str(c0), str(c1)],
                                                                        [str(other_lr)]]
    assert group_label([a0.name, a1.name]) == "resnet8_digits_a_lr_0.05_trial_*"
    assert group_label([c0.name, c1.name]) == "resnet8_digits_a_a0.1_b1.0_s*"
    # without args.json (the original code's folders) the trial part of the name is set aside
    legacy = [tmp_path / "old" / f"wrn_40_2_cifar100_lr_0.05_trial_{t}" for t in (0, 1)]
    for p in legacy:
        p.mkdir(parents=True)
    assert group_runs([str(p) for p in legacy]) == [[str(p) for p in legacy]]


def test_seed_band_is_the_mean_and_sample_std_over_the_epochs_every_seed_reached():
    curves = [{2: 60.0, 4: 70.0, 6: 65.0}, {2: 62.0, 4: 74.0}, {2: 64.0, 4: 72.0, 8: 1.0}]
    epochs, means, stds = seed_band(curves)
    assert epochs == [2, 4]                                   # only the epochs every seed reached
    assert means == pytest.approx([62.0, 72.0]) and stds == pytest.approx([2.0, 2.0])   # sample std (n - 1)


def test_group_seeds_draws_mean_and_std_bands(tmp_path, capsys, unsaved):
    base = ["--dataset", "digits_a", "--model", "resnet8", "--epochs", "10"]
    seeds = [make_run(tmp_path, train_vanilla, base + ["--trial", str(t), "--seed", str(t)]) for t in range(3)]
    ctc = make_run(tmp_path, train_ctc, base + ["--stage_two_epoch", "6"])
    for run, level in zip(seeds + [ctc], (60, 62, 64, 70)):
        sweep_file(run, "transfer_digits_b_linear.csv", KIND["transfer"].columns,
                   [{"epoch": e, "final_acc": level + e, "source_acc": 90.0} for e in EPOCHS], transfer,
                   ["--source_dataset", "digits_a", "--target_dataset", "digits_b"])
    out = tmp_path / "fig"
    code, text, err = run_plot([str(r) for r in seeds + [ctc]] + ["--group_seeds", "--out", str(out),
                                                                  "--labels", "vanilla,ctc"], capsys)
    assert code == 0, err
    assert f"vanilla (3 seeds): mean +- std over {', '.join(r.name for r in seeds)}" in text
    series = figures.load_series(group_runs([str(r) for r in seeds + [ctc]]), ["vanilla", "ctc"])
    panel = axes_of(figures.transfer_figure(series))[0]
    mean = next(ln for ln in panel.get_lines() if ln.get_label() == "vanilla (3 seeds)")
    assert list(mean.get_ydata()) == pytest.approx([62 + e for e in EPOCHS])
    band = panel.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(62 + 2 - 2.0) and band.max() == pytest.approx(62 + 10 + 2.0)
    assert len(panel.collections) == 1                        # the single CTC run has no band
    os.remove(seeds[2] / "transfer_digits_b_linear.csv")
    code, text, _ = run_plot([str(r) for r in seeds] + ["--group_seeds", "--out", str(out)], capsys)
    assert code == 0 and (f"note: resnet8_digits_a_lr_0.05_trial_* (3 seeds): only {seeds[0].name}, "
                          f"{seeds[1].name} of its 3 runs have transfer_digits_b_linear.csv") in text
    code, _, err = run_plot([str(r) for r in seeds] + ["--group_seeds", "--labels", "a,b", "--out", str(out)], capsys)
    assert code == 2 and "--labels has 2 entries for 1 groups of seeds" in err


def test_compression_measures_of_seed_groups_and_files_written_before_them(tmp_path, capsys, unsaved):
    base = ["--dataset", "digits_a", "--model", "resnet8", "--epochs", "10"]
    seeds = [make_run(tmp_path, train_vanilla, base + ["--trial", str(t), "--seed", str(t)]) for t in range(2)]
    for t, run in enumerate(seeds):
        sweep_file(run, "discriminability_digits_a.csv", KIND["discriminability"].columns,
                   [{"epoch": e, "recall_at_1": 50.0, "nmi": 0.5, "nc1": 1.0 + t, "effective_rank": 10.0 + 2 * t,
                     "coding_rate": 5.0} for e in EPOCHS], discriminability, ["--dataset", "digits_a"])
    series = figures.load_series(group_runs([str(r) for r in seeds]), ["vanilla"])
    rank = axes_of(figures.compression_figure(series))[1]
    assert list(rank.get_lines()[0].get_ydata()) == pytest.approx([11.0] * len(EPOCHS))   # the mean over seeds
    band = rank.collections[0].get_paths()[0].vertices[:, 1]          # +- the std over seeds, sqrt(2)
    assert band.min() == pytest.approx(11 - 2 ** 0.5) and band.max() == pytest.approx(11 + 2 ** 0.5)
    old = tmp_path / "old"     # a file written before the three columns: read, drawn without them
    old.mkdir()
    fields = ["epoch", "recall_at_1", "nmi", "source_acc", "seconds"]
    sweep_file(old, "discriminability_digits_a.csv", fields,
               [{"epoch": e, "recall_at_1": 50.0 + e, "nmi": 0.5} for e in EPOCHS], discriminability,
               ["--dataset", "digits_a"])
    code, text, err = run_plot([str(old), "--out", str(tmp_path / "fig")], capsys)
    assert code == 0, err
    assert "discriminability_digits_a.csv has no nc1, effective_rank or coding_rate values" in text
    assert "1 figures" in text
    assert find_results(str(old))["discriminability_digits_a"].series("nc1") == {}


def test_concat_results_get_their_own_figure(runs, tmp_path, capsys, unsaved):
    results = ResultsCSV(str(runs[0] / "transfer_digits_b_concat.csv"), KIND["transfer_concat"].columns)
    results.append({"epochs": "4;10", "paths": "a;b", "feat_size": 128, "final_acc": 71.5, "protocol": "linear"})
    out = tmp_path / "fig"
    code, text, _ = run_plot([str(r) for r in runs] + ["--out", str(out)], capsys)
    assert code == 0 and "6 figures" in text
    series = figures.load_series([[r] for r in runs])
    ax = axes_of(figures.concat_figure(series))[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{runs[0].name}: epochs 4;10 (linear)"]
    assert [p.get_width() for p in ax.patches] == [71.5]


def test_a_sweep_run_only_as_shards_is_plotted(tmp_path):
    run = tmp_path / "sharded_run"
    run.mkdir()
    for shard, epochs in ((0, [2, 6]), (1, [4])):
        results = ResultsCSV(str(run / "transfer_cinic10_linear.csv"), KIND["transfer"].columns, shard=(shard, 2))
        for e in epochs:
            results.append({"epoch": e, "final_acc": 50 + e})
    result = find_results(str(run))["transfer_cinic10_linear"]
    assert result.series("final_acc") == {2: 52.0, 4: 54.0, 6: 56.0}
    # no .args.json: described from the writer's naming, valid split and data set names intact
    facts = result.facts
    assert (facts["dataset"], facts["split"], facts["described_by"]) == ("cinic10", "valid", "name")


def test_names_without_argument_records_parse_with_the_writers_suffixes(tmp_path, capsys):
    for name in ("mi_xt_cifar100_infonce", "mi_ty_digits_b_layer2_holdout", "discriminability_digits_a_train",
                 "transfer_digits_b_linear_bntrain_train", "transfer_svhn_finetune_cv5", "notes"):
        (tmp_path / f"{name}.csv").write_text("epoch,mi,final_acc,recall_at_1\n2,1,1,1\n")
    found = find_results(str(tmp_path))
    assert {k: v.facts.get("dataset") for k, v in found.items()} == {
        "mi_xt_cifar100_infonce": "cifar100", "mi_ty_digits_b_layer2_holdout": "digits_b",
        "discriminability_digits_a_train": "digits_a", "transfer_digits_b_linear_bntrain_train": "digits_b",
        "transfer_svhn_finetune_cv5": "svhn"}                 # a suffix it does not know still finds its kind
    assert f"note: {tmp_path / 'notes.csv'} is not a result file plot.py knows" in capsys.readouterr().out
    assert found["mi_xt_cifar100_infonce"].facts["variant"] == "infonce bound"
    assert found["mi_ty_digits_b_layer2_holdout"].facts["variant"] == "layer 2, held-out rows"
    assert found["discriminability_digits_a_train"].facts["split"] == "train"
    assert found["transfer_digits_b_linear_bntrain_train"].facts["split"] == "train"


def test_a_protocol_record_describes_a_file_its_name_alone_would_not(tmp_path, capsys):
    """The name is read back only for a file without a protocol record: with one, any name of the kind's shape
    is read; without one, a name its sweep never writes is left out with a note."""
    for stem in ("transfer_digits_b_probe", "transfer_digits_b_other"):
        (tmp_path / f"{stem}.csv").write_text("epoch,final_acc\n2,55\n")
    (tmp_path / "transfer_digits_b_probe.args.json").write_text(json.dumps(
        {"target_dataset": "digits_b", "mode": "finetune", "epoch": 30, "lr": 0.01}))
    found = find_results(str(tmp_path))
    assert list(found) == ["transfer_digits_b_probe"] and found["transfer_digits_b_probe"].series("final_acc") == {
        2: 55.0}
    facts = found["transfer_digits_b_probe"].facts
    assert (facts["dataset"], facts["mode"], facts["described_by"]) == ("digits_b", "finetune", "args")
    out = capsys.readouterr().out
    assert f"note: {tmp_path / 'transfer_digits_b_other.csv'} is not a result file plot.py knows" in out


def test_plotted_columns_are_columns_the_sweeps_write():
    assert set(QUANTITIES) == set(FACTS) == set(KIND)
    for kind in KINDS:
        plotted = set(QUANTITIES[kind.name]) | ({"std"} if kind.name == "mi" else set())
        assert plotted <= set(kind.numeric), kind.name


@pytest.mark.parametrize("damage, message", [
    ("epoch,final_acc\n2,55.0\n4,abc\n", "line 3: its 'final_acc' value 'abc' is not a number"),
    ("epoch,final_acc\n2,55.0\n4\n", "line 3: it has 1 values where the header has 2 columns"),
    ("2,55.0\n4,56.0\n", "line 1: it should be the header, with a 'epoch' column, but reads '2,55.0'"),
    ("epoch,final_acc\nx,55\n", "line 2: its epoch 'x' is not a whole number"),
    ("epoch,final_acc\n2,5\x005\n", "line 2: its 'final_acc' value '5\\x005' is not a number"),
    ("epoch,final_acc\n2,55\n\xff\xfe,1\n", "line 3: it is not UTF-8 text"),
])
def test_damaged_result_files_are_refused_with_file_and_line(tmp_path, capsys, damage, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "transfer_digits_b_linear.csv").write_bytes(damage.encode("latin-1"))
    code, _, err = run_plot([str(run), "--out", str(tmp_path / "fig")], capsys)
    assert code == 2 and "Traceback" not in err
    assert flat("transfer_digits_b_linear.csv is damaged at line") in flat(err) and flat(message) in flat(err)
    assert flat("then plot again") in flat(err) and flat("--force to the sweep") not in flat(err)   # plot.py cannot


def test_a_damaged_argument_record_is_a_clear_error(runs, tmp_path, capsys):
    (runs[0] / "discriminability_digits_a.args.json").write_text("{not json")
    code, _, err = run_plot([str(runs[0]), "--out", str(tmp_path / "fig")], capsys)
    assert code == 2 and flat("discriminability_digits_a.args.json could not be read as JSON") in flat(err)


def test_no_results_is_an_error_and_missing_results_are_noted(runs, tmp_path, capsys, unsaved):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    code, _, err = run_plot([str(empty), "--out", str(tmp_path / "fig")], capsys)
    assert code == 2 and "no result files in" in err
    for f in os.listdir(runs[1]):
        if f.startswith(("mi_", "discriminability_")) or f == "transfer_digits_b_finetune.csv":
            os.remove(runs[1] / f)
    os.remove(runs[0] / "mi_ty_digits_b.csv")
    out = tmp_path / "fig2"
    code, text, err = run_plot([str(runs[1]), str(runs[0]), str(empty), "--out", str(out)], capsys)
    assert code == 0, err
    assert f"note: {runs[1].name} has no transfer_digits_b_finetune.csv; its curve is left out of transfer" in text
    assert "note: no run has I(T;Y) on digits_b (test split); that panel of information is left out" in text
    assert "5 figures" in text


def test_unknown_run_folder_is_a_clear_error(tmp_path, capsys):
    code, _, err = run_plot([str(tmp_path / "nope"), "--out", str(tmp_path)], capsys)
    assert code == 2 and "not found" in err


def test_a_cross_validated_probe_is_titled_by_its_folds_and_pooled_split():
    facts = FACTS["transfer"]({"target_dataset": "digits_b", "mode": "linear", "cv": 5, "epoch": 30, "lr": 0.4})
    assert facts["split"] == "train + test" and facts["detail"].startswith("5-fold cross-validated linear probe")
    plain = FACTS["transfer"]({"target_dataset": "digits_b", "mode": "linear", "cv": None})
    assert plain["split"] == "test" and plain["detail"].startswith("linear probe")


LINEAR = {"target_dataset": "cinic10", "mode": "linear", "bn_mode": "eval", "eval_split": "valid", "cv": None}
MI = {"mode": "xt", "dataset": "cifar100", "estimator": "mine", "layer": -1, "holdout": None}


NAMED = [   # (kind, a sweep's flags, the file it writes)
    ("transfer", LINEAR, "transfer_cinic10_linear.csv"),
    ("transfer", {**LINEAR, "bn_mode": "train", "eval_split": "test"}, "transfer_cinic10_linear_bntrain_test.csv"),
    ("transfer", {**LINEAR, "mode": "finetune", "bn_mode": "train"}, "transfer_cinic10_finetune.csv"),
    ("transfer", {**LINEAR, "target_dataset": "digits_b", "eval_split": "test", "cv": 5},
     "transfer_digits_b_linear_cv5.csv"),
    ("transfer_concat", {**LINEAR, "mode": "two_stage"}, "transfer_cinic10_concat.csv"),
    ("discriminability", {"dataset": "cifar100", "train_split": False}, "discriminability_cifar100.csv"),
    ("discriminability", {"dataset": "cifar100", "train_split": True}, "discriminability_cifar100_train.csv"),
    ("mi", MI, "mi_xt_cifar100.csv"),
    ("mi", {**MI, "mode": "ty", "dataset": "cinic10", "estimator": "infonce", "layer": 2, "holdout": 0.5},
     "mi_ty_cinic10_infonce_layer2_holdout.csv"),
    ("mi", {**MI, "mode": "xy", "layer": 2}, "mi_xy_cifar100.csv"),
]


@pytest.mark.parametrize("kind, flags, name", NAMED)
def test_each_result_kind_names_its_files_and_reads_the_names_back(kind, flags, name):
    assert KIND[kind].file_name(flags) == name
    stem = name[:-len(".csv")]
    assert kind_of(stem) is KIND[kind]
    recovered = flags_from_name(KIND[kind], stem)
    dataset = "target_dataset" if kind.startswith("transfer") else "dataset"
    assert recovered[dataset] == flags[dataset]
    if "mode" in flags:                             # a concat file's name does not say its protocol
        assert recovered["mode"] == (flags["mode"] if kind != "transfer_concat" else "linear")


def test_every_result_kind_has_a_file_name_example():
    assert {kind for kind, _, _ in NAMED} == set(KIND) == {kind.name for kind in KINDS}
