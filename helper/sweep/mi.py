"""Neural mutual-information estimators (MINE and friends) for I(X;T) and I(T;Y).

The paper tracks I(X;T) and I(T;Y) per checkpoint with MINE (Belghazi et al.
2018). `estimate_mi` trains a statistics network T(a, b) on joint pairs and
shuffled (marginal) pairs and reports a lower bound on I(a; b) in nats.
Everything after the initial copy of the table to the device stays there:
batches are drawn with torch on the device, held-out checkpoints are compared and
kept on the device, and the per-iteration bounds are read back once, so the loop has
no host synchronisation (a progress bar reads one value every PROGRESS_EVERY steps).
"""
import contextlib
import functools
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from helper.core.device import get_device
from helper.core.errors import UserError
from helper.core.speed import compiled

INFONCE_MAX_ROWS = 512
INFONCE_MAX_ELEMENTS = 2 ** 27   # R x R x hidden activations per layer
HOLDOUT_EVAL_BATCHES = 10   # fresh batches per held-out evaluation
HOLDOUT_EVAL_ROWS = 2048    # rows per held-out batch at least: smaller ones make the log-mean-exp term noisy
EVAL_EVERY = 250            # steps between held-out evaluations (early stopping)
PROGRESS_EVERY = 200        # steps between the progress bar's reads of the running bound


def one_hot(labels, num_classes):
    """Integer labels (N,) -> float one-hot table (N, num_classes) for I(T;Y)."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"one_hot: labels must lie in [0, {num_classes}), got range "
                        f"[{int(labels.min())}, {int(labels.max())}].")
    return nn.functional.one_hot(labels, num_classes).float()


class StatisticsNetwork(nn.Module):
    """MINE critic: MLP [a, b] -> hidden -> hidden -> hidden -> 1 with ReLU."""

    def __init__(self, in_dim, hidden_size):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(in_dim, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, 1))
        for layer in list(self.body)[:-1]:      # last Linear keeps PyTorch's init
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)

    def forward(self, ab):
        """Concatenated pairs (B, Da+Db) -> scores (B,)."""
        return self.body(ab).squeeze(-1)

    def score(self, a, b):
        """Paired rows a (B, Da), b (B, Db) -> scores (B,)."""
        return self(torch.cat([a, b], dim=1))

    def pairwise(self, a, b):
        """All pairs (a_i, b_j) -> score matrix (R, R) without building R*R inputs.

        The first layer is linear in [a, b], so W [a_i, b_j] = W_a a_i + W_b b_j:
        project each side once (R, H) and broadcast to (R, R, H).
        """
        first = self.body[0]
        w_a, w_b = first.weight.split([a.shape[1], b.shape[1]], dim=1)
        hidden = nn.functional.linear(a, w_a, first.bias)[:, None, :] \
            + nn.functional.linear(b, w_b)[None, :, :]
        return self.body[1:](hidden).squeeze(-1)


def sample_batches(n, batch_size, generator=None, device=None):
    """Three independent draws without replacement from range(n) -> (3, batch_size) long.

    Row 0 indexes the joint batch (a_i, b_i); rows 1 and 2 are the a-rows and
    b-rows of the marginal batch, drawn independently so the pairs follow
    p(a)p(b). randperm beats argsort/topk of noise on CPU and is one kernel on CUDA.
    """
    return torch.stack([torch.randperm(n, generator=generator, device=device)[:batch_size]
                        for _ in range(3)])


def _log_mean_exp(values):
    """log(mean(exp(values))) for values (B,), stable against overflow."""
    return values.logsumexp(0) - math.log(values.shape[0])


class Estimator:
    """One MI lower bound: the value it reads from the critic and the loss the critic is trained on.

    A subclass sets `name` and `value` (and `loss` when its critic is not trained on the
    negative bound); `register_estimator` makes it a choice of `estimate_mi` and mine.py.
    """

    name = ""
    pairwise = False     # scores all R x R pairs of one batch (InfoNCE) instead of a joint and a marginal batch

    def bound(self, net, table, dim_a, idx, tau, pairwise_rows):
        """One draw of the bound from table = [a, b] (N, Da+Db) -> (bound, t_joint (B,), t_marg (B,)).

        idx (3, B): the joint rows and the a- and b-rows of the marginal batch (`sample_batches`);
        tau: SMILE's clip; pairwise_rows: the R of a pairwise estimator. Joint rows are one gather
        from the concatenated table; marginal rows join the a-part of one draw to the b-part of another.
        """
        joint, marg_a, marg_b = idx
        a, b = table[:, :dim_a], table[:, dim_a:]
        t_joint = net(table[joint]).float()
        t_marg = net.score(a[marg_a], b[marg_b]).float()
        return self.value(t_joint, t_marg, tau), t_joint, t_marg

    def value(self, t_joint, t_marg, tau):
        """The bound (0-d, nats) from the critic's joint scores t_joint (B,) and marginal scores t_marg (B,)."""
        raise NotImplementedError

    def loss(self, bound, t_joint, t_marg, ma, ma_rate, first_step):
        """(loss to minimise, ma): by default the negative bound. `ma` is a moving average an
        estimator may carry from step to step (MINE's of E_Q[e^T], a 0-d tensor; else None)."""
        return -bound, ma


ESTIMATOR_REGISTRY = {}     # name -> Estimator instance, in registration order (mine.py's --estimator choices)


def register_estimator(cls):
    """Class decorator: one instance of the `Estimator` subclass `cls`, registered under `cls.name`."""
    if not cls.name or cls.name in ESTIMATOR_REGISTRY:
        raise ValueError(f"MI estimator name {cls.name!r} is empty or registered twice")
    ESTIMATOR_REGISTRY[cls.name] = cls()
    return cls


@register_estimator
class MINE(Estimator):
    """Donsker-Varadhan bound, critic trained with MINE's bias-corrected gradient (Belghazi et al. 2018)."""

    name = "mine"

    def value(self, t_joint, t_marg, tau):
        return t_joint.mean() - _log_mean_exp(t_marg)

    def loss(self, bound, t_joint, t_marg, ma, ma_rate, first_step):
        exp_mean = t_marg.exp().mean()
        batch_ma = exp_mean.detach()
        ok = torch.isfinite(batch_ma)
        if first_step:
            ma = torch.where(ok, batch_ma, torch.ones_like(batch_ma))
        else:
            ma = torch.where(ok, (1 - ma_rate) * ma + ma_rate * batch_ma, ma)
        # Bias-corrected gradient of the DV bound (MINE, Sec. 3.2).
        return -(t_joint.mean() - exp_mean / ma), ma


@register_estimator
class NWJ(Estimator):
    """Nguyen-Wainwright-Jordan bound, critic trained on the bound itself."""

    name = "nwj"

    def value(self, t_joint, t_marg, tau):
        # NWJ: I >= E_P[T] - e^-1 E_Q[e^T], tight at T = 1 + log p/q. The critic's output f
        # stands for T - 1, so e^f starts at the density ratio of independent variables (1),
        # as MINE's does. With f = T an initial ~0 critic sits at e^(T-1) = 0.37, and on 5-d
        # Gaussians (truth 0.72 nats) the bound reached 0.23 in the 600 steps MINE needs for 0.69.
        return t_joint.mean() + 1 - t_marg.exp().mean()


@register_estimator
class InfoNCE(Estimator):
    """InfoNCE (van den Oord et al. 2018) over all pairs of R rows; at most log R nats."""

    name = "infonce"
    pairwise = True

    def bound(self, net, table, dim_a, idx, tau, pairwise_rows):
        """The critic matrix of the first `pairwise_rows` joint rows replaces t_joint/t_marg (returned as None)."""
        joint = idx[0]
        a, b = table[:, :dim_a], table[:, dim_a:]
        rows = joint[:pairwise_rows]
        scores = net.pairwise(a[rows], b[rows]).float()             # (R, R)
        bound = (scores.diag() - scores.logsumexp(1)).mean() + math.log(len(rows))
        return bound, None, None


@register_estimator
class SMILE(Estimator):
    """DV with exp(T_marg) clipped to [e^-tau, e^tau] (Song & Ermon 2020)."""

    name = "smile"

    def value(self, t_joint, t_marg, tau):
        return t_joint.mean() - _log_mean_exp(t_marg.clamp(-tau, tau))

    def loss(self, bound, t_joint, t_marg, ma, ma_rate, first_step):
        # SMILE trains the critic with the Jensen-Shannon (f-GAN) bound and only
        # reads out the clipped DV value (Song & Ermon 2020, their reference code).
        js = -nn.functional.softplus(-t_joint).mean() - nn.functional.softplus(t_marg).mean()
        return -js, ma


ESTIMATORS = tuple(ESTIMATOR_REGISTRY)      # every estimator is registered above this line


def _bound(net, estimator, table, dim_a, idx, tau, infonce_rows):
    """`Estimator.bound` of the estimator named `estimator` (one function for torch.compile to trace)."""
    return ESTIMATOR_REGISTRY[estimator].bound(net, table, dim_a, idx, tau, infonce_rows)


def _check_inputs(a, b, estimator, iters, batch_size, window, holdout, eval_every):
    if estimator not in ESTIMATOR_REGISTRY:
        raise UserError(f"Unknown MI estimator '{estimator}'; choose one of {', '.join(ESTIMATOR_REGISTRY)}.")
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[0]:
        raise UserError(f"estimate_mi needs two 2-D tables with the same number of rows, "
                        f"got shapes {tuple(a.shape)} and {tuple(b.shape)}.")
    if a.shape[0] < 2:
        raise UserError("estimate_mi needs at least 2 rows to form joint and marginal batches.")
    if iters < 1 or batch_size < 1 or window < 1 or eval_every < 1:
        raise UserError(f"iters, batch_size, window and eval_every must be positive, "
                        f"got {iters}, {batch_size}, {window}, {eval_every}.")
    if holdout is not None and not 0 < holdout < 1:
        raise UserError(f"holdout is the held-out fraction of rows and must lie in (0, 1), got {holdout}.")


def _split_rows(n, holdout, generator, device):
    """Seeded split of range(n) -> (fit_rows, select_rows, report_rows), each of at least 2 rows.

    The held-out fraction is halved: `select_rows` pick the critic's best checkpoint,
    `report_rows` give its bound. The maximum over many noisy evaluations is biased
    upwards on the rows it was taken on, and not on rows it never saw.
    """
    n_held = int(round(n * holdout))
    n_select = n_held // 2
    if n - n_held < 2 or n_select < 2 or n_held - n_select < 2:
        raise UserError(f"holdout={holdout} on {n} rows leaves fewer than 2 rows for fitting, "
                        "selecting or reporting; use more rows or another fraction.")
    perm = torch.randperm(n, generator=generator, device=device)
    return perm[n_held:], perm[:n_select], perm[n_select:n_held]


@torch.no_grad()
def _bound_draws(net, estimator, table, dim_a, batch_size, tau, infonce_rows, generator, amp):
    """The bound of `net` on HOLDOUT_EVAL_BATCHES fresh batches of `table` -> (draws,) fp32, on the device.

    Batches of at least HOLDOUT_EVAL_ROWS rows (forward only, so cheap): on 5-d Gaussians with
    4.15 nats the bound's std between batches was 0.9 nats at 256 rows and 0.25 at 2,048."""
    batch = min(max(batch_size, HOLDOUT_EVAL_ROWS), table.shape[0])
    values = []
    for _ in range(HOLDOUT_EVAL_BATCHES):
        idx = sample_batches(table.shape[0], batch, generator, table.device)
        with torch.autocast(table.device.type, dtype=torch.bfloat16, enabled=amp):
            values.append(_bound(net, estimator, table, dim_a, idx, tau, infonce_rows)[0].float())
    return torch.stack(values)


class _BestCritic:
    """Early stopping without host synchronisation: the critic's parameters at its best held-out bound.

    `offer` compares on the device and copies with torch.where, so the loop never reads a
    value back; the winner is read once, after training.
    """

    def __init__(self, net, evaluate):
        self.evaluate = evaluate
        self.params = [p.detach() for p in net.parameters()]
        self.snapshot = [p.clone() for p in self.params]
        device = self.params[0].device
        self.best = torch.full((), -math.inf, device=device)
        self.step = torch.zeros((), dtype=torch.long, device=device)
        self.curve = []                         # (step, held-out bound on the selection rows)

    def offer(self, step):
        value = self.evaluate().mean()
        better = value > self.best              # NaN never wins
        self.best = torch.where(better, value, self.best)
        self.step = torch.where(better, torch.full_like(self.step, step), self.step)
        for kept, param in zip(self.snapshot, self.params):
            kept.copy_(torch.where(better, param, kept))
        self.curve.append((step, value))

    def restore(self):
        """Load the best parameters into the network; returns (best step, curve as numpy (E, 2))."""
        with torch.no_grad():
            for kept, param in zip(self.snapshot, self.params):
                param.copy_(kept)
        values = torch.stack([value for _, value in self.curve]).double().cpu().numpy()
        curve = np.stack([np.array([step for step, _ in self.curve], dtype=np.float64), values], axis=1)
        return int(self.step), curve


def critic_memory_bytes(rows, in_dim, batch_size, hidden_size, estimator, infonce_rows, holdout=False):
    """Rough peak bytes of one fit: the (rows, in_dim) table, the critic with its gradient, Adam's
    two moments (and the best-critic copy with holdout), and one step's fp32 activations.

    An estimate, not a measurement: it is there to refuse a size that cannot fit before
    the allocator fails halfway with a traceback.
    """
    params = in_dim * hidden_size + 2 * hidden_size * hidden_size + 4 * hidden_size + 1
    weights = params * (5 if holdout else 4)
    if ESTIMATOR_REGISTRY[estimator].pairwise:
        # R x R x hidden per layer, pre- and post-ReLU, forward and gradient.
        activations = infonce_rows * infonce_rows * hidden_size * 3 * 2 * 2
    else:
        # joint + marginal batch: gathered inputs and 3 layers of pre/post-ReLU outputs, forward and gradient.
        activations = 2 * batch_size * (in_dim + 6 * hidden_size) * 2
    return 4 * (rows * in_dim + weights + activations)


def free_memory_bytes(device):
    """Bytes that `device` can still hand out (CUDA: free + cached by PyTorch; CPU: MemAvailable), or None."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(device, need):
    """UserError when `need` bytes exceed what `device` has free (no check where that is unknown)."""
    free = free_memory_bytes(device)
    if free is not None and need > free:
        raise UserError(f"MI estimation needs about {need / 2 ** 30:.1f} GiB of {device} memory for the "
                        f"statistics network, its optimiser and one step's activations, but only "
                        f"{free / 2 ** 30:.1f} GiB are free. Lower --hidden_size or --batch_size.")


@contextlib.contextmanager
def _matmul_precision(device, tf32):
    """TF32 tensor-core matmuls (10-bit mantissa products, fp32 accumulation) on CUDA while inside."""
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def _progress_postfix(steps, history, step, holdout_best):
    """Every PROGRESS_EVERY steps: the mean bound of the last PROGRESS_EVERY steps (and with holdout
    the best held-out one so far) on the bar, in one read back."""
    shown = [history[step + 1 - PROGRESS_EVERY:step + 1].nanmean()]
    if holdout_best is not None:
        shown.append(holdout_best.best)
    values = torch.stack(shown).tolist()
    names = ("bound", "held_out_best")
    steps.set_postfix({name: f"{value:.3f}" for name, value in zip(names, values)}, refresh=False)


@dataclass(frozen=True)
class MineConfig:
    """mine.py's estimator flags: which bound, how long and how the statistics network trains."""
    estimator: str = "mine"         # a bound of ESTIMATORS (paper: mine, Donsker-Varadhan)
    iters: int = 10000
    batch_size: int = 5000          # pairs per iteration
    lr: float = 1e-4                # Adam learning rate of the statistics network
    hidden_size: int = 1024
    ma_rate: float = 0.01           # weight of each batch in MINE's moving average of E[exp T]
    window: int = 500               # last iterations averaged for the reported value
    holdout: float | None = None    # fraction of rows held out to pick and score the critic
    seed: int | None = 0            # the critic's init and the batch draws; None: another fit each call
    amp: bool = False               # bf16 autocast on CUDA (bounds reduced in fp32)
    tf32: bool = True               # TF32 matmuls on CUDA when amp is off
    compile: bool = False
    progress: bool = True


def estimate_mi(a, b, config=MineConfig(), device=None, eval_every=EVAL_EVERY, smile_tau=5.0):
    """Lower-bound I(a; b) in nats for paired rows a (N, Da), b (N, Db), with `config`'s estimator and critic.

    Returns a dict: 'mi' and 'std' (mean and std of the last `window` per-iteration bounds),
    'history' (numpy, NaN where the bound was not finite), 'nan_steps' (skipped updates),
    'iters', 'seconds', 'estimator', 'batch_size' (the rows one bound sees: clamped to the
    rows available, and for 'infonce' to the R x R critic's memory cap, which also caps
    its bound at log R).

    With `holdout` the rows are split into fitting rows and a held-out fraction, itself halved:
    every `eval_every` steps (and before the first) the critic's bound on fresh batches of the
    selection half is compared on the device with the best so far, and the best critic kept
    (early stopping). 'mi' and 'std' are then that critic's bound on fresh batches of the
    report half, which took no part in the choice; 'best_step' the step it was reached;
    'mi_train' the training-row value that 'mi' would be without holdout; 'holdout_curve'
    (E, 2) the selection-half bound per evaluation. Negative values are reported as they are.

    `amp`: bf16 autocast of the critic (bounds reduced in fp32); `tf32`: TF32 matmuls on
    CUDA when not `amp`. `compile`: each step's bound through torch.compile, compiled once
    per process. `progress`: a bar whose postfix shows the mean bound of the last
    PROGRESS_EVERY steps, read back every PROGRESS_EVERY steps only. Raises UserError when
    the fit cannot fit in the device's free memory, or when no finite bound is left in
    the window (e.g. every step was non-finite).
    """
    start = time.time()
    estimator, lr, ma_rate, holdout, seed = config.estimator, config.lr, config.ma_rate, config.holdout, config.seed
    amp, tf32, progress = config.amp, config.tf32, config.progress
    iters, batch_size, window = int(config.iters), int(config.batch_size), int(config.window)
    eval_every = int(eval_every)
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    _check_inputs(a, b, estimator, iters, batch_size, window, holdout, eval_every)
    chosen = ESTIMATOR_REGISTRY[estimator]
    device = device if isinstance(device, torch.device) else get_device(device)
    dim_a, hidden_size = a.shape[1], int(config.hidden_size)
    rows, in_dim = a.shape[0], a.shape[1] + b.shape[1]
    infonce_rows = max(2, min(batch_size, rows, INFONCE_MAX_ROWS, math.isqrt(INFONCE_MAX_ELEMENTS // hidden_size)))
    check_memory(device, critic_memory_bytes(rows, in_dim, min(batch_size, rows), hidden_size, estimator,
                                             infonce_rows, holdout is not None))
    table = torch.cat([a.to(device, torch.float32), b.to(device, torch.float32)], dim=1)   # (N, Da+Db), on device
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    if holdout is not None:
        fit_rows, select_rows, report_rows = _split_rows(rows, holdout, generator, device)
        fit = table[fit_rows]
    else:
        fit = table
    n = fit.shape[0]
    batch_size = min(batch_size, n)
    infonce_rows = max(2, min(infonce_rows, batch_size))

    # A seeded init must not touch the global RNG; an unseeded one must differ call to call.
    with torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext():
        if seed is not None:
            torch.manual_seed(int(seed))
        net = StatisticsNetwork(table.shape[1], hidden_size).to(device)
    draws = functools.partial(_bound_draws, net, estimator, dim_a=dim_a, batch_size=batch_size, tau=smile_tau,
                              infonce_rows=infonce_rows, generator=generator, amp=amp)
    best = _BestCritic(net, functools.partial(draws, table[select_rows])) if holdout is not None else None
    # Fused Adam accepts a device-side `found_inf` flag (the hook GradScaler uses)
    # and then skips the whole update, moments and step count included, inside
    # the kernel. Zeroing NaN grads instead would still move the weights through
    # Adam's momentum, and testing the loss on the host would sync every step.
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, fused=True)
    params = [p for p in net.parameters()]
    history = torch.empty(iters, device=device)
    skipped = torch.zeros((), device=device)
    ma = None
    bound_fn = compiled(_bound) if config.compile else _bound
    steps = tqdm(range(iters), desc=f"MI ({estimator})", disable=not progress)
    with _matmul_precision(device, tf32 and not amp):
        if best is not None:
            best.offer(0)
        for step in steps:
            idx = sample_batches(n, batch_size, generator, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                bound, t_joint, t_marg = bound_fn(net, estimator, fit, dim_a, idx, smile_tau, infonce_rows)
            loss, ma = chosen.loss(bound, t_joint, t_marg, ma, ma_rate, step == 0)
            optimizer.zero_grad()
            loss.backward()
            grad_norm = nn.utils.get_total_norm([p.grad for p in params])
            found_inf = (~(torch.isfinite(loss) & torch.isfinite(grad_norm))).float()
            optimizer.found_inf = found_inf
            optimizer.step()
            skipped += found_inf
            history[step] = bound.detach()
            done = step + 1
            if best is not None and (done % eval_every == 0 or done == iters):
                best.offer(done)
            if progress and done % PROGRESS_EVERY == 0:
                _progress_postfix(steps, history, step, best)
        if best is not None:
            best_step, curve = best.restore()
            held = draws(table[report_rows]).double().cpu()

    history = history.cpu().numpy().astype(np.float64)
    history[~np.isfinite(history)] = np.nan
    tail = history[-min(window, iters):]
    if not np.isfinite(tail).any():
        raise UserError(f"MI estimation ({estimator}) produced no finite bound in the last "
                        f"{len(tail)} iterations ({int(skipped)} of {iters} updates were skipped "
                        f"as non-finite). Check the inputs for NaN/Inf values or lower the learning rate.")
    result = {"mi": float(np.nanmean(tail)), "std": float(np.nanstd(tail)), "history": history,
              "nan_steps": int(skipped), "iters": iters, "estimator": estimator,
              "batch_size": infonce_rows if chosen.pairwise else batch_size}
    if holdout is not None:
        result.update(mi_train=result["mi"], mi=float(held.mean()), std=float(held.std()),
                      best_step=best_step, holdout_curve=curve)
    result["seconds"] = time.time() - start
    return result
