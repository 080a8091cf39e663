"""Iterations per second of `estimate_mi`'s MINE loop versus the original-style loop, and
(--check) MINE's precision on known-MI cases at the paper's widths.

The reference draws indices with `np.random.choice(range(N), replace=False)`,
builds joint and marginal batches on the host in numpy, copies each one to the
device as a fresh `torch.FloatTensor` every iteration and reads the bound back
with `.item()`. Both use the same statistics network, Adam and MINE loss.

    python bench.py mine --rows 2000 --dim_a 256 --dim_b 64 --iters 30

--check fits the cases of helper/sweep/mi_cases.py (I(X;T)-like: latent Gaussians mapped into
--dim_a and --dim_b dimensions; I(T;Y)-like: 100 Gaussian classes in --dim_b dimensions) in
fp32, bf16 autocast and, on CUDA, TF32, and prints each estimate against the truth and fp32:

    python bench.py mine --check --iters 10000 --lr 1e-4          # the paper's sizes, for a GPU
"""
import argparse
import time

import numpy as np
import torch

from benchmarks.common import device_name, device_record, ratio_row, write_bench_json
from helper.cli import HelpFormatter
from helper.cli.flags import POSITIVE_FLOAT, number_in
from helper.cli.speed import resolve_speed_args
from helper.core.device import get_device
from helper.core.errors import UserError
from helper.sweep.mi import MineConfig, StatisticsNetwork, estimate_mi, one_hot
from helper.sweep.mi_cases import gaussian_classes, latent_gaussian


def original_batch(data, dim_a, batch_size, marginal):
    """Host-side batch (B, Da+Db) as the original MINE code drew it."""
    rows = data.shape[0]
    joint_index = np.random.choice(range(rows), size=batch_size, replace=False)
    if not marginal:
        return data[joint_index]
    marginal_index = np.random.choice(range(rows), size=batch_size, replace=False)
    return np.concatenate([data[joint_index][:, :dim_a], data[marginal_index][:, dim_a:]], axis=1)


def reference_loop(a, b, args, device):
    """Original-style MINE training; returns seconds for `args.iters` iterations."""
    start = time.perf_counter()
    data = np.concatenate([a, b], axis=1)
    net = StatisticsNetwork(data.shape[1], args.hidden_size).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    ma_et, history = 1.0, []
    for _ in range(args.iters):
        joint = torch.FloatTensor(original_batch(data, a.shape[1], args.batch_size, False)).to(device)
        marginal = torch.FloatTensor(original_batch(data, a.shape[1], args.batch_size, True)).to(device)
        t, et = net(joint), torch.exp(net(marginal))
        mi_lb = t.mean() - torch.log(et.mean())
        ma_et = (1 - args.ma_rate) * ma_et + args.ma_rate * et.mean().detach()
        loss = -(t.mean() - et.mean() / ma_et)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(mi_lb.item())          # the original logged every step
    return time.perf_counter() - start


def fit(a, b, args, device, iters, amp, tf32=True):
    """One seeded MINE fit of I(a; b) with the benchmark's critic settings: `estimate_mi`'s result dict."""
    config = MineConfig(iters=iters, batch_size=args.batch_size, lr=args.lr, hidden_size=args.hidden_size,
                        ma_rate=args.ma_rate, window=min(500, iters), seed=0, amp=amp, tf32=tf32, progress=False)
    return estimate_mi(a, b, config, device=device)


def ours(a, b, args, device, iters):
    """`estimate_mi` seconds for `iters` iterations (table copy included)."""
    return fit(torch.from_numpy(a), torch.from_numpy(b), args, device, iters, args.amp)["seconds"]


def validate(args):
    if min(args.rows, args.dim_a, args.dim_b, args.batch_size, args.iters, args.hidden_size) < 1:
        raise UserError("--rows, --dim_a, --dim_b, --batch_size, --iters and --hidden_size must be positive.")
    if args.batch_size > args.rows:
        raise UserError(f"--batch_size {args.batch_size} exceeds --rows {args.rows}; the original "
                        "sampler draws without replacement.")
    if args.check and min(args.dim_a, args.dim_b) < 16:
        raise UserError("--check maps 16 latent dimensions into --dim_a and --dim_b: both must be at least 16.")


def run_device(args, cuda_iters, cpu_iters):
    """The device of one run; fills --iters for it when not given and checks the flags."""
    device = get_device(args.device)
    if args.iters is None:
        args.iters = cuda_iters if device.type == "cuda" else cpu_iters
    validate(args)
    return device


def flags_of(args):
    """The flags a record keeps: all but where it is written."""
    return {k: v for k, v in vars(args).items() if k != "json"}


def measure(args):
    """Both loops on synthetic correlated data; a dict of it/s, speed-up and the set-up."""
    device = run_device(args, cuda_iters=300, cpu_iters=20)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((args.rows, args.dim_a), dtype=np.float32)
    b = (a[:, :args.dim_b] + rng.standard_normal((args.rows, args.dim_b), dtype=np.float32)
         if args.dim_b <= args.dim_a else rng.standard_normal((args.rows, args.dim_b), dtype=np.float32))

    warm = argparse.Namespace(**{**vars(args), "iters": 3})
    ours(a, b, warm, device, 3)                         # CUDA context, cuBLAS handles, autotune
    reference_loop(a, b, warm, device)
    ours_its = args.iters / ours(a, b, args, device, args.iters)
    reference_its = args.iters / reference_loop(a, b, args, device)
    return {**device_record(device), "config": flags_of(args),
            "estimate_mi_it_per_s": ours_its, "reference_it_per_s": reference_its,
            "speedup": ours_its / reference_its}


# (name, builder of (a, b, truth) from the flags): truths 2.30, 3.32 and ~3.42 nats.
CASES = {
    "xt_k16_rho0.5": lambda args: latent_gaussian(args.rows, 16, 0.5, args.dim_a, args.dim_b, seed=0),
    "xt_k4_rho0.9": lambda args: latent_gaussian(args.rows, 4, 0.9, args.dim_a, args.dim_b, seed=0),
    "ty_100_classes": lambda args: class_case(args),
}
BF16_TOLERANCE = (0.1, 0.03)     # nats or fraction of fp32, whichever is larger: bf16's allowance as a default


def class_case(args):
    """T (rows, dim_b) of 100 Gaussian classes (separation 3), Y one-hot, true I(T;Y)."""
    t, labels, truth = gaussian_classes(args.rows, 100, args.dim_b, separation=3.0, seed=0)
    return t, one_hot(labels, 100), truth


def precisions(device):
    """(name, amp, tf32) of each precision worth comparing on `device`."""
    rows = [("fp32", False, False), ("bf16", True, False)]
    return rows + [("tf32", False, True)] if device.type == "cuda" else rows


def check(args, device):
    """Every case in every precision; a list of records with the truth and the difference to fp32."""
    records = []
    for name, build in CASES.items():
        a, b, truth = build(args)
        fp32 = None
        for precision, amp, tf32 in precisions(device):
            result = fit(a, b, args, device, args.iters, amp, tf32)
            fp32 = result["mi"] if fp32 is None else fp32
            records.append({"case": name, "truth": truth, "precision": precision, "mi": result["mi"],
                            "std": result["std"], "minus_fp32": result["mi"] - fp32,
                            "seconds": result["seconds"], "nan_steps": result["nan_steps"]})
            print(f"{name:<16}{truth:>8.3f}{precision:>7}{result['mi']:>9.3f}{result['std']:>8.3f}"
                  f"{result['mi'] / truth:>8.3f}{result['mi'] - fp32:>+10.3f}{result['seconds']:>9.1f}", flush=True)
    return records


def bf16_verdict(records):
    """Whether bf16 stays within 0.1 nats or 3 % of fp32 on every case (the rule for a bf16 default)."""
    fp32 = {r["case"]: r["mi"] for r in records if r["precision"] == "fp32"}
    return all(abs(r["minus_fp32"]) <= max(BF16_TOLERANCE[0], BF16_TOLERANCE[1] * abs(fp32[r["case"]]))
               for r in records if r["precision"] == "bf16")


def main(args):
    """Without --device: the CPU, then the GPU when present (the on-device gain differs most there)."""
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    records = []
    for device in devices:
        run = argparse.Namespace(**{**vars(args), "device": device})
        if args.check:
            records.append(check_record(run))
            continue
        record = measure(run)
        records.append(record)
        print(f"MINE on {record['device']} ({record['device_name']}), torch {torch.__version__}: rows={run.rows} "
              f"X={run.dim_a}-d T={run.dim_b}-d batch={run.batch_size} hidden={run.hidden_size} "
              f"iters={run.iters} amp={run.amp}")
        print(f"{'loop':<34}{'it/s':>10}")
        print(f"{'estimate_mi (on-device sampling)':<34}{record['estimate_mi_it_per_s']:>10.2f}")
        print(f"{'reference (numpy + host copy)':<34}{record['reference_it_per_s']:>10.2f}")
        print(f"{'speed-up (ours / reference)':<34}{record['speedup']:>10.2f}x\n")
    write_bench_json(args.json, {"runs": records})


def check_record(args):
    """The known-MI check on one device, printed as a table; returns its record."""
    device = run_device(args, cuda_iters=10000, cpu_iters=300)
    print(f"MINE known-MI check on {device} ({device_name(device)}), torch {torch.__version__}: rows={args.rows} "
          f"X={args.dim_a}-d T={args.dim_b}-d batch={args.batch_size} hidden={args.hidden_size} "
          f"iters={args.iters} lr={args.lr}")
    print(f"{'case':<16}{'truth':>8}{'prec':>7}{'mi':>9}{'std':>8}{'/truth':>8}{'-fp32':>10}{'seconds':>9}")
    records = check(args, device)
    verdict = bf16_verdict(records)
    print(f"bf16 within {BF16_TOLERANCE[0]} nats or {BF16_TOLERANCE[1]:.0%} of fp32 on every case: "
          f"{'yes' if verdict else 'no'}\n")
    return {**device_record(device), "config": flags_of(args), "check": records,
            "bf16_within_tolerance": verdict}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--dim_a", type=int, default=3072, help="X width (CIFAR image 3x32x32)")
    parser.add_argument("--dim_b", type=int, default=512, help="T width (feature)")
    parser.add_argument("--batch_size", type=int, default=MineConfig.batch_size)
    parser.add_argument("--iters", type=int, default=None,
                        help="default 300 on CUDA, 20 on CPU; with --check 10000 on CUDA, 300 on CPU")
    parser.add_argument("--hidden_size", type=int, default=MineConfig.hidden_size)
    parser.add_argument("--lr", type=POSITIVE_FLOAT, default=MineConfig.lr)
    parser.add_argument("--ma_rate", type=number_in(float, 0, 1, low_open=True), default=MineConfig.ma_rate)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: the CPU, then CUDA if present)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast in estimate_mi only")
    parser.add_argument("--check", action="store_true",
                        help="known-MI precision check (fp32, bf16, and TF32 on CUDA) instead of the speed comparison")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the numbers here")
    return parser


def table_row(args, device):
    """bench.py's mine row: estimate_mi's iterations/s against the original loop's."""
    sizes = (["--rows", "2000", "--dim_a", "256", "--dim_b", "64", "--batch_size", "500", "--hidden_size", "256",
              "--iters", "20"] if args.quick else [])
    amp = ["--amp"] if resolve_speed_args(args, device).amp else []
    record = measure(get_args_parser().parse_args(sizes + amp + ["--device", str(device)]))
    config = record["config"]
    return ratio_row(f"mine b{config['batch_size']} {config['dim_a']}+{config['dim_b']}-d", "it/s",
                     record["reference_it_per_s"], record["estimate_mi_it_per_s"], record, ratio=record["speedup"])
