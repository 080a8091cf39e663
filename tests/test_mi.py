"""MI estimators on Gaussians with known MI, the sampler, seeding, holdout and NaN handling."""
import json
import math

import numpy as np
import pytest
import torch

from helper.core.errors import UserError
from helper.sweep.mi_cases import class_means, gaussian_classes, latent_gaussian
from helper.sweep.mi import ESTIMATORS, PROGRESS_EVERY, StatisticsNetwork, critic_memory_bytes, one_hot, sample_batches
from tests.helpers import mine_fit, needs_compiler

CPU = torch.device("cpu")
FAST = dict(hidden_size=64, lr=2e-3, window=200, device=CPU, seed=0)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny MLPs run far faster on one thread, especially on a shared 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gaussian_pair(rows, dim, rho, seed):
    """y = rho x + sqrt(1 - rho^2) e; returns x, y (rows, dim) and the true MI in nats."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, dim, generator=gen)
    y = rho * x + math.sqrt(1 - rho ** 2) * torch.randn(rows, dim, generator=gen)
    return x, y, -dim / 2 * math.log(1 - rho ** 2)


def run(estimator, x, y, iters=600, **kw):
    batch = 64 if estimator == "infonce" else 256
    return mine_fit(x, y, estimator, iters=iters, batch_size=kw.pop("batch_size", batch), **{**FAST, **kw})


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_recovers_known_mi_and_zero(estimator):
    """Each estimator offered is within 10 % of the truth at d=5, rho=0.5 (0.719 nats), and ~0 when independent."""
    x, y, truth = gaussian_pair(4000, 5, 0.5, seed=1)
    correlated = run(estimator, x, y, iters=1000)
    assert abs(correlated["mi"] - truth) < 0.1 * truth, (correlated["mi"], truth)
    independent = run(estimator, x, torch.randn(4000, 5, generator=torch.Generator().manual_seed(5)), iters=300)
    assert abs(independent["mi"]) < 0.1, independent["mi"]
    assert correlated["nan_steps"] == 0 and correlated["estimator"] == estimator
    assert correlated["history"].shape == (1000,) and correlated["iters"] == 1000


def test_infonce_is_capped_by_log_batch():
    x, y, truth = gaussian_pair(2000, 2, 0.99, seed=2)         # truth 3.9 nats > log 8
    result = run("infonce", x, y, iters=300, batch_size=8, lr=5e-3)
    assert truth > math.log(8)
    assert np.nanmax(result["history"]) <= math.log(8) + 1e-5
    assert result["mi"] > 0.6 * math.log(8)
    wide = mine_fit(x, y, "infonce", iters=2, batch_size=2000, window=2, hidden_size=64, device=CPU, seed=0)
    assert wide["batch_size"] == 512                            # the R x R critic's row cap, reported as such


def test_sampler_draws_without_replacement_and_independent_marginals():
    gen = torch.Generator().manual_seed(0)
    idx = sample_batches(100, 30, gen, CPU)
    assert idx.shape == (3, 30) and idx.dtype == torch.long
    for row in idx:
        assert len(set(row.tolist())) == 30 and row.min() >= 0 and row.max() < 100
    assert sorted(sample_batches(50, 50, gen, CPU)[0].tolist()) == list(range(50))
    draws = torch.stack([sample_batches(100, 30, gen, CPU) for _ in range(400)])   # (400, 3, 30)
    marg_a, marg_b = draws[:, 1].flatten().double(), draws[:, 2].flatten().double()
    assert abs(torch.corrcoef(torch.stack([marg_a, marg_b]))[0, 1]) < 0.05
    same = (draws[:, 1] == draws[:, 2]).double().mean()
    assert same < 0.03                                          # ~1/100 when independent
    assert (draws[:, 0] == draws[:, 1]).double().mean() < 0.03


def test_same_seed_same_result_and_batch_clamp():
    x, y, _ = gaussian_pair(100, 2, 0.5, seed=3)
    first = mine_fit(x, y, iters=40, batch_size=5000, **{**FAST, "seed": 7})
    second = mine_fit(x, y, iters=40, batch_size=5000, **{**FAST, "seed": 7})
    other = mine_fit(x, y, iters=40, batch_size=5000, **{**FAST, "seed": 8})
    assert np.array_equal(first["history"], second["history"]) and first["mi"] == second["mi"]
    assert not np.array_equal(first["history"], other["history"])
    assert first["batch_size"] == 100
    unseeded = [mine_fit(x, y, iters=3, **{**FAST, "window": 3, "seed": None})["history"] for _ in range(2)]
    assert not np.array_equal(*unseeded)                        # unseeded fits differ (init and batches)
    mixed = mine_fit(x.double(), (y > 0).long(), iters=3, **{**FAST, "window": 3})   # any dtypes: fitted in float32
    assert np.isfinite(mixed["mi"])


HELD_OUT = dict(estimator="mine", holdout=0.5, device=CPU, seed=1)


@pytest.mark.parametrize("iters", [300, 1000, 2000])
def test_held_out_estimate_of_independent_variables_stays_near_zero(iters):
    """A critic that memorises its rows: the training bound climbs, the early-stopped held-out one stays ~0.

    1,000 rows (500 fitted) instead of 20,000 and a 64-wide critic at batch 128, so that
    memorisation sets in within these step counts at a test's cost (docs/mine.md has the
    20,000-row, 256-wide, batch-512 numbers)."""
    x, _, _ = gaussian_pair(1000, 5, 0.0, seed=1)
    y = torch.randn(1000, 5, generator=torch.Generator().manual_seed(2))
    result = mine_fit(x, y, iters=iters, batch_size=128, hidden_size=64, lr=3e-3, window=min(500, iters),
                         **HELD_OUT)
    assert abs(result["mi"]) < 0.05, result["mi"]
    assert result["mi_train"] > 0.1                             # memorised: the training rows show "information"
    curve = result["holdout_curve"]                              # (step, bound on the selection rows)
    assert curve[0, 0] == 0 and curve[-1, 0] == iters and np.all(np.diff(curve[:, 0]) > 0)
    assert curve[-1, 1] < -0.1                                   # the last critic is worse than none on new rows
    assert result["best_step"] in curve[:, 0] and result["batch_size"] == 128


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_held_out_estimate_of_correlated_gaussians_within_10_percent(rho):
    x, y, truth = gaussian_pair(40000, 5, rho, seed=1)          # 0.72 and 4.15 nats
    result = mine_fit(x, y, iters=1500, batch_size=256, hidden_size=64, lr=1e-3, window=500,
                         eval_every=100, **HELD_OUT)
    assert abs(result["mi"] - truth) < 0.1 * truth, (result["mi"], truth)
    assert 0 < result["best_step"] <= 1500 and result["std"] > 0 and np.isfinite(result["mi_train"])


class SyncCounter:
    """Counts the Tensor methods that copy a value to the host (each one a device sync on CUDA)."""
    METHODS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__")

    def __init__(self, monkeypatch):
        self.calls = 0
        for name in self.METHODS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self.wrap(original))

    def wrap(self, original):
        def counted(tensor, *args, **kwargs):
            self.calls += 1
            return original(tensor, *args, **kwargs)
        return counted


def test_best_step_is_deterministic_and_costs_no_per_step_sync(monkeypatch, capsys):
    x, y, _ = gaussian_pair(2000, 2, 0.8, seed=3)
    kw = dict(batch_size=64, hidden_size=16, lr=3e-3, window=50, eval_every=25, **HELD_OUT)
    counter = SyncCounter(monkeypatch)
    calls = {}
    for iters in (100, 200):
        counter.calls = 0
        first = mine_fit(x, y, iters=iters, **kw)
        calls[iters] = counter.calls
    assert calls[200] == calls[100]                             # 100 more steps and 4 more evaluations: no read
    second = mine_fit(x, y, iters=200, **kw)
    assert (first["best_step"], first["mi"], first["std"]) == (second["best_step"], second["mi"], second["std"])
    np.testing.assert_array_equal(first["holdout_curve"], second["holdout_curve"])
    for iters in (PROGRESS_EVERY, 2 * PROGRESS_EVERY):
        counter.calls = 0
        mine_fit(x, y, iters=iters, progress=True, **kw)
        calls[iters] = counter.calls
    assert calls[2 * PROGRESS_EVERY] - calls[PROGRESS_EVERY] == 1   # the bar: one read per PROGRESS_EVERY steps
    bar = capsys.readouterr().err
    assert "bound=" in bar and "held_out_best=" in bar             # the postfix of the progress bar


def test_memory_estimate_refuses_a_critic_that_cannot_fit(monkeypatch):
    need = critic_memory_bytes(10000, 3584, 5000, 1024, "mine", 362)
    assert 0.5e9 < need < 2e9                                   # the paper's I(X;T) fit: ~1 GB in fp32
    assert critic_memory_bytes(10000, 3584, 5000, 1024, "mine", 362, holdout=True) > need
    with pytest.raises(UserError, match=r"needs about \d+\.\d GiB .* only 0\.0 GiB are free"):
        monkeypatch.setattr("helper.sweep.mi.free_memory_bytes", lambda device: 2 ** 20)
        mine_fit(torch.zeros(100, 2), torch.zeros(100, 2), iters=1, hidden_size=4096, device=CPU)


def test_non_finite_steps_are_skipped_not_zeroed():
    x, y, truth = gaussian_pair(2000, 2, 0.8, seed=6)
    x[17] = float("nan")
    result = run("mine", x, y)
    assert 0 < result["nan_steps"] < 600
    assert np.isnan(result["history"]).sum() == result["nan_steps"]
    assert abs(result["mi"] - truth) < 0.25
    with pytest.raises(UserError, match="no finite bound"):
        run("mine", torch.full((50, 2), float("nan")), y[:50], iters=20)


def test_pairwise_critic_matches_explicit_pairs_and_init():
    torch.manual_seed(0)
    net = StatisticsNetwork(5, 16)
    linears = [m for m in net.body if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        assert all(float(layer.bias.abs().max()) == 0 for layer in linears[:3])
        assert abs(float(linears[1].weight.std()) - 0.02) < 0.004
    a, b = torch.randn(4, 3), torch.randn(4, 2)
    explicit = torch.stack([net.score(a[i].expand(4, 3), b) for i in range(4)])
    assert torch.allclose(net.pairwise(a, b), explicit, atol=1e-6)


# The known-MI cases of the paper's critics at a quarter of their widths (X 768 of 3,072, T 128 of 512), a 64-wide
# critic and under 1,000 steps, so that each fit takes seconds on a CPU; `python bench.py mine --check` runs them
# at full size. I(X;T)-like: 2 latent dimensions at rho 0.9 (1.66 nats); I(T;Y)-like: 10 classes (0.86 nats).
KNOWN_MI = {
    "xt": (lambda: latent_gaussian(10000, 2, 0.9, dim_x=768, dim_t=128, seed=0), 800),
    "ty": (lambda: class_table(gaussian_classes(10000, 10, 128, separation=1.5, seed=0, mc_rows=20000)), 600),
}


def class_table(case):
    t, labels, truth = case
    return t, one_hot(labels, 10), truth


@pytest.mark.skipif(not torch.amp.autocast_mode.is_autocast_available("cpu"), reason="no CPU autocast")
@pytest.mark.parametrize("case", sorted(KNOWN_MI))
def test_known_mi_at_reduced_paper_widths_fp32_and_bf16(case, record_property):
    build, iters = KNOWN_MI[case]
    a, b, truth = build()
    kw = dict(iters=iters, batch_size=256, hidden_size=64, lr=3e-3, window=200, device=CPU, seed=0)
    full, low = mine_fit(a, b, **kw), mine_fit(a, b, amp=True, **kw)
    record_property("fp32_minus_truth", full["mi"] - truth)
    record_property("bf16_minus_fp32", low["mi"] - full["mi"])
    assert abs(full["mi"] - truth) < 0.1 * truth, (full["mi"], truth)
    assert low["nan_steps"] == 0 and abs(low["mi"] - full["mi"]) < 0.2 * truth, (low["mi"], full["mi"])


@needs_compiler
def test_compiled_step_follows_the_eager_one():
    x, y, _ = gaussian_pair(300, 2, 0.8, seed=8)
    kw = dict(iters=30, batch_size=64, **{**FAST, "hidden_size": 32, "window": 10})
    eager = mine_fit(x, y, **kw)
    fast = mine_fit(x, y, compile=True, **kw)
    np.testing.assert_allclose(fast["history"], eager["history"], atol=1e-3, rtol=1e-3)
    assert fast["nan_steps"] == 0


def test_one_hot_and_input_errors():
    table = one_hot(torch.tensor([0, 2, 1]), 3)
    assert table.dtype == torch.float32
    assert torch.equal(table, torch.tensor([[1., 0, 0], [0, 0, 1], [0, 1, 0]]))
    with pytest.raises(UserError):
        one_hot(torch.tensor([3]), 3)
    with pytest.raises(UserError, match="same number of rows"):
        mine_fit(torch.zeros(10, 2), torch.zeros(9, 2), iters=1, device=CPU)
    with pytest.raises(UserError, match="Unknown MI estimator"):
        mine_fit(torch.zeros(10, 2), torch.zeros(10, 2), estimator="kde", iters=1, device=CPU)
    with pytest.raises(UserError, match="holdout"):
        mine_fit(torch.zeros(10, 2), torch.zeros(10, 2), holdout=1.5, iters=1, device=CPU)


def test_known_mi_cases_are_what_they_claim():
    x, t, truth = latent_gaussian(300, 3, 0.5, dim_x=40, dim_t=20, seed=0)
    assert x.shape == (300, 40) and t.shape == (300, 20) and truth == pytest.approx(-1.5 * math.log(0.75))
    assert torch.linalg.matrix_rank(x) == 3 and torch.linalg.matrix_rank(t) == 3   # injective images of 3-d latents
    assert abs(float(x.var()) - 1) < 0.3                                            # unit variance per coordinate
    # Two classes at +-m in one dimension: I = log 2 - E[h(sigmoid(2 m t))], by quadrature instead of sampling.
    t, labels, mc = gaussian_classes(100, 2, 1, separation=1.0, seed=3, mc_rows=100_000)
    means = class_means(2, 1, 1.0, torch.Generator().manual_seed(3)).flatten()
    grid = torch.linspace(-12, 12, 20001, dtype=torch.float64)
    density = sum(torch.exp(-0.5 * (grid - m) ** 2) for m in means) / (2 * math.sqrt(2 * math.pi))
    posterior = torch.exp(-0.5 * (grid - means[0]) ** 2) / (2 * math.sqrt(2 * math.pi) * density)
    entropy = -(posterior * posterior.log() + (1 - posterior) * (1 - posterior).log()).nan_to_num()
    exact = math.log(2) - float((density * entropy).sum() * (grid[1] - grid[0]))
    assert mc == pytest.approx(exact, abs=0.01) and t.shape == (100, 1) and set(labels.tolist()) <= {0, 1}
    separated = gaussian_classes(10, 100, 64, separation=20.0, seed=0, mc_rows=2000)[2]
    assert separated == pytest.approx(math.log(100), abs=1e-3)


def test_bench_check_compares_every_precision_with_fp32(tmp_path, capsys):
    from benchmarks import mine as bench_mine
    path = tmp_path / "check.json"
    argv = ["--check", "--device", "cpu", "--rows", "300", "--dim_a", "32", "--dim_b", "16", "--batch_size", "64",
            "--hidden_size", "8", "--iters", "5", "--json", str(path)]
    bench_mine.main(bench_mine.get_args_parser().parse_args(argv))
    (run,) = json.loads(path.read_text())["runs"]
    records = run["check"]
    expected = {(case, precision) for case in bench_mine.CASES for precision in ("fp32", "bf16")}
    assert {(r["case"], r["precision"]) for r in records} == expected
    assert all(r["minus_fp32"] == 0 for r in records if r["precision"] == "fp32")
    assert "bf16 within 0.1 nats or 3% of fp32 on every case" in capsys.readouterr().out
    off = [dict(r, minus_fp32=0.5) if r["precision"] == "bf16" else r for r in records]
    assert bench_mine.bf16_verdict(records) == run["bf16_within_tolerance"] and not bench_mine.bf16_verdict(off)
