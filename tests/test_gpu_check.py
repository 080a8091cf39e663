"""scripts/gpu_check.sh --quick end to end on the CPU (every part, the JSON and the Markdown report), and a part
that runs over its time limit being stopped while the report keeps the others."""
import glob
import json
import os
import subprocess
import sys

from scripts import gpu_check
from tests.conftest import REPO_ROOT


def test_gpu_check_quick_runs_every_part_and_reports_each(tmp_path):
    env = dict(os.environ, NO_SETUP="1", PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}")
    result = subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "gpu_check.sh"), "--quick", "--out",
                             str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = record["parts"]
    assert result.returncode == 0, {name: part["status"] for name, part in parts.items()}
    assert list(parts) == ["bench", "mine_check", "memory", "pipeline"]        # --quick: flags inside bench
    assert all(p["status"] == "ok" for p in parts.values())
    rows = parts["bench"]["result"]["results"]
    assert [row["name"].split()[0] for row in rows] == ["train", "probe", "mine", "discriminability", "+", "flags"]
    assert all(row["ours"] > 0 and row["reference"] > 0 for row in rows)
    (check,) = parts["mine_check"]["result"]["runs"]
    assert {c["precision"] for c in check["check"]} == {"fp32", "bf16"} and "bf16_within_tolerance" in check
    assert len(parts["memory"]["result"]["peak_mib"]) == 2
    assert all(mib > 0 for mib in parts["memory"]["result"]["peak_mib"].values())
    steps = parts["pipeline"]["result"]["steps"]
    assert [s["step"].split()[0] for s in steps] == ["train_vanilla.py", "train_ctc.py"] + [
        "transfer.py", "discriminability.py", "mine.py", "mine.py"] * 2 + ["plot.py"]
    assert all(s["status"] == 0 for s in steps)
    assert glob.glob(str(tmp_path / "parts" / "pipeline" / "figures" / "*.png"))
    report = (tmp_path / "gpu_check.md").read_text()
    assert "| pipeline | ok |" in report and "| flags +channels_last resnet8 b16 | images/s |" in report


def test_a_part_past_its_limit_is_stopped_and_the_report_keeps_the_rest(tmp_path):
    status, seconds = gpu_check.run_part([sys.executable, "-c", "import time; time.sleep(60)"], 1,
                                         str(tmp_path / "slow.log"))
    assert status == "stopped at its 1 s limit" and 1 <= seconds < 30
    assert gpu_check.run_part([sys.executable, "-c", "raise SystemExit(3)"], 30, str(tmp_path / "bad.log"))[0] \
        == "failed (exit 3)"
    record = {"device_name": "cpu", "torch": "2", "date": "today", "quick": True, "parts": {
        "bench": {"status": status, "seconds": seconds, "result": None},
        "memory": {"status": "ok", "seconds": 2.0, "result": {"measure": "rss", "peak_mib": {"training step": 700.0}}}}}
    gpu_check.write_report(str(tmp_path), record)
    report = (tmp_path / "gpu_check.md").read_text()
    assert "| bench | stopped at its 1 s limit |" in report and "| training step | 700 |" in report
    assert json.loads((tmp_path / "gpu_check.json").read_text())["parts"]["memory"]["status"] == "ok"
