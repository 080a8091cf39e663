"""The benchmark package's shared pieces (timing, rows, the JSON record) and `python bench.py PIECE ...`,
which runs one benchmark with its own flags. bench.py's table end to end: tests/test_speed.py."""
import json
import os
import subprocess
import sys

import pytest
import torch

import bench
from benchmarks.common import ratio_row, time_calls, write_bench_json
from tests.conftest import REPO_ROOT


def test_time_calls_times_only_the_calls_after_warmup():
    calls = []

    def step():
        calls.append(len(calls))
        return len(calls)

    seconds, values = time_calls(step, calls=3, warmup=2, device=torch.device("cpu"))
    assert values == [3, 4, 5] and len(calls) == 5 and seconds >= 0


def test_ratio_row_divides_ours_by_reference_unless_told():
    assert ratio_row("train", "images/s", 50.0, 75.0, {})["ratio"] == 1.5
    assert ratio_row("probe", "s/ckpt", 9.0, 0.5, {"epochs": 2}, ratio=18.0) == {
        "name": "probe", "unit": "s/ckpt", "reference": 9.0, "ours": 0.5, "ratio": 18.0, "config": {"epochs": 2}}


def test_write_bench_json_puts_torch_and_date_beside_the_numbers(tmp_path):
    path = tmp_path / "deep" / "record.json"
    write_bench_json(str(path), {"speedup": 2.0})
    record = json.loads(path.read_text())
    assert record["torch"] == torch.__version__ and record["date"][:4].isdigit() and record["speedup"] == 2.0
    write_bench_json(None, {"speedup": 2.0})                # no path: nothing written, no error


def test_a_piece_runs_with_its_own_flags_and_writes_its_record(tmp_path, capsys):
    path = tmp_path / "mine.json"
    code = bench.run_piece("mine", ["--rows", "300", "--dim_a", "32", "--dim_b", "16", "--batch_size", "64",
                                    "--hidden_size", "8", "--iters", "3", "--device", "cpu", "--json", str(path)])
    (run,) = json.loads(path.read_text())["runs"]
    assert code == 0 and run["device"] == "cpu" and run["config"]["iters"] == 3
    assert run["estimate_mi_it_per_s"] > 0 and run["reference_it_per_s"] > 0
    assert "speed-up (ours / reference)" in capsys.readouterr().out


@pytest.mark.parametrize("piece", bench.PIECES)
def test_every_piece_has_its_own_help(piece, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.run_piece(piece, ["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and f"bench.py {piece} [-h]" in " ".join(out.split())


def test_bench_py_dispatches_a_piece_and_reports_bad_flags_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "bench.py"), "mine", "--rows", "10",
                             "--batch_size", "20", "--device", "cpu"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "--batch_size 20 exceeds --rows 10" in result.stderr
    assert "Traceback" not in result.stderr
