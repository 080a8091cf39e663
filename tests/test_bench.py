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


def test_cpu_peak_reads_cores_clock_and_vector_width_from_lscpu(monkeypatch):
    from benchmarks import cpu
    lscpu = "CPU(s):              4\nCPU max MHz:         3000.0000\nFlags:  fpu avx2 fma avx512f avx512_bf16\n"
    monkeypatch.setattr(cpu.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=lscpu))
    peak, formula = cpu.cpu_peak()
    assert peak == 4 * 3000e6 * 16 * 2 * cpu.FMA_UNITS
    assert formula.startswith("4 cores x 3.00 GHz x 16 fp32 lanes (AVX-512) x 2 (FMA) x 2 FMA units = 768 GFLOP/s")
    assert "native bf16" in formula


def test_bench_cpu_times_each_variant_against_fp32_eager_and_checks_its_loss(tmp_path, capsys):
    path = tmp_path / "cpu.json"
    code = bench.run_piece("cpu", ["--models", "resnet8", "--batch_sizes", "8", "--steps", "2", "--warmup", "1",
                                   "--variants", "channels_last", "bf16", "procs x 1 thread", "--json", str(path)])
    record = json.loads(path.read_text())
    rows = {row["variant"]: row for row in record["rows"]}
    cores = torch.get_num_threads()
    assert code == 0 and list(rows) == ["fp32 eager", "channels_last", "bf16", f"{cores} procs x 1 thread"]
    assert rows["fp32 eager"]["ratio"] == 1.0 and rows["fp32 eager"]["loss_rel_diff"] == 0.0
    assert all(row["images_per_s"] > 0 and 0 < row["peak_fraction"] < 1 for row in rows.values())
    assert rows["channels_last"]["within_tolerance"]                   # the same arithmetic, another layout
    assert abs(rows[f"{cores} procs x 1 thread"]["loss"] - rows["fp32 eager"]["loss"]) < 1e-3   # same batches
    assert 0.05 < rows["fp32 eager"]["gflop_per_image"] < 0.1         # resnet8: 25 MFLOPs forward, ~3x to train
    out = capsys.readouterr().out
    assert "peak: " in out and " x 2 (FMA) x " in out and out.count(" pass") + out.count(" FAIL") == 4
