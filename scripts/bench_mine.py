"""Iterations per second of `estimate_mi`'s MINE loop versus the original-style loop.

The reference draws indices with `np.random.choice(range(N), replace=False)`,
builds joint and marginal batches on the host in numpy, copies each one to the
device as a fresh `torch.FloatTensor` every iteration and reads the bound back
with `.item()`. Both use the same statistics network, Adam and MINE loss.

    python scripts/bench_mine.py --rows 2000 --dim_a 256 --dim_b 64 --iters 30
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from helper.device import get_device  # noqa: E402
from helper.errors import UserError, run_cli  # noqa: E402
from helper.mi import StatisticsNetwork, estimate_mi  # noqa: E402
from helper.speed import device_name, write_bench_json  # noqa: E402


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


def ours(a, b, args, device, iters):
    """`estimate_mi` seconds for `iters` iterations (table copy included)."""
    result = estimate_mi(torch.from_numpy(a), torch.from_numpy(b), "mine", iters=iters,
                         batch_size=args.batch_size, lr=args.lr, hidden_size=args.hidden_size,
                         ma_rate=args.ma_rate, window=min(500, iters), seed=0,
                         device=device, amp=args.amp)
    return result["seconds"]


def measure(args):
    """Both loops on synthetic correlated data; a dict of it/s, speed-up and the set-up."""
    device = get_device(args.device)
    if args.iters is None:
        args.iters = 300 if device.type == "cuda" else 20
    if min(args.rows, args.dim_a, args.dim_b, args.batch_size, args.iters, args.hidden_size) < 1:
        raise UserError("--rows, --dim_a, --dim_b, --batch_size, --iters and --hidden_size must be positive.")
    if args.batch_size > args.rows:
        raise UserError(f"--batch_size {args.batch_size} exceeds --rows {args.rows}; the original "
                        "sampler draws without replacement.")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((args.rows, args.dim_a), dtype=np.float32)
    b = (a[:, :args.dim_b] + rng.standard_normal((args.rows, args.dim_b), dtype=np.float32)
         if args.dim_b <= args.dim_a else rng.standard_normal((args.rows, args.dim_b), dtype=np.float32))

    warm = argparse.Namespace(**{**vars(args), "iters": 3})
    ours(a, b, warm, device, 3)                         # CUDA context, cuBLAS handles, autotune
    reference_loop(a, b, warm, device)
    ours_its = args.iters / ours(a, b, args, device, args.iters)
    reference_its = args.iters / reference_loop(a, b, args, device)
    return {"device": str(device), "device_name": device_name(device), "torch": torch.__version__,
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "estimate_mi_it_per_s": ours_its, "reference_it_per_s": reference_its,
            "speedup": ours_its / reference_its}


def main(args):
    """Without --device: the CPU, then the GPU when present (the on-device gain differs most there)."""
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    records = []
    for device in devices:
        run = argparse.Namespace(**{**vars(args), "device": device})
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


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--dim_a", type=int, default=3072, help="X width (CIFAR image 3x32x32)")
    parser.add_argument("--dim_b", type=int, default=512, help="T width (feature)")
    parser.add_argument("--batch_size", type=int, default=5000)
    parser.add_argument("--iters", type=int, default=None, help="default 300 on CUDA, 20 on CPU")
    parser.add_argument("--hidden_size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--ma_rate", type=float, default=0.01)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: the CPU, then CUDA if present)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast in estimate_mi only")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the numbers here")
    return parser


if __name__ == "__main__":
    run_cli(main, build_parser())
