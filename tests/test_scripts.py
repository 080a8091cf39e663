"""The shell pipelines: syntax, shellcheck (when installed), and the quick start end to end at a tiny size."""
import glob
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers import read_rows

SCRIPTS = sorted(glob.glob(os.path.join(REPO_ROOT, "scripts", "*.sh"))) + [os.path.join(REPO_ROOT, ".ci", "run")]


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", script], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck():
    result = subprocess.run(["shellcheck", "-x", *SCRIPTS], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout


def test_quickstart_pipeline_end_to_end(tmp_path):
    """Every step of scripts/quickstart.sh (vanilla, CTC, transfer, discriminability, MINE, plots), tiny."""
    env = dict(os.environ, NO_SETUP="1", WORKDIR=str(tmp_path), PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
               EPOCHS="2", STAGE_TWO="1", NCE_K="32", PROBE_EPOCHS="3", MINE_ITERS="10", MINE_BATCH="64",
               MINE_HIDDEN="16", MINE_SKIP="2", OMP_NUM_THREADS="2")
    script = os.path.join(REPO_ROOT, "scripts", "quickstart.sh")
    result = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = {"vanilla": tmp_path / "save/model/resnet8_digits_a_lr_0.05_trial_0_vanilla",
            "ctc": tmp_path / "save/model/resnet8_digits_a_a0.5_b1.0_ctc"}
    for run in runs.values():
        assert [r["epoch"] for r in read_rows(run / "transfer_digits_b_linear.csv")] == ["1", "2"]
        assert [r["epoch"] for r in read_rows(run / "discriminability_digits_a.csv")] == ["1", "2"]
        for name in ("mi_xt_digits_a", "mi_ty_digits_a", "mi_xt_digits_b", "mi_ty_digits_b"):
            assert [r["epoch"] for r in read_rows(run / f"{name}.csv")] == ["2"], name
    for figure in ("transfer", "discriminability", "information", "information_plane"):
        assert (tmp_path / "figures" / f"{figure}.png").stat().st_size > 1000
    # idempotent: a second run trains nothing and recomputes nothing
    again = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already finished" in again.stdout and "0 to go" in again.stdout
