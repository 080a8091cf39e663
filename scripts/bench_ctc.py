"""Seconds per training step of CTC's stage 2 (and stage 1) versus plain cross-entropy.

Same model, batch, SGD optimiser and speed flags (train_ctc.py's: bf16 autocast and
channels_last on CUDA); synthetic images, labels, indices and CRD negatives already on
the device, so only the step is timed. Stage 2 = forward
and backward of the model + frozen-network forward + CRD (embeds, 2 x (B, K+1)
memory reads, NCE, memory update); the time is split into the frozen forward
and the contrastive part. Uses `helper.train.ctc.CTCObjective`, the code train_ctc.py runs.

    python scripts/bench_ctc.py --model resnext32_16x4d --batch_size 64 --nce_k 16384 --n_data 50000
    python scripts/bench_ctc.py --model resnet8 --steps 5 --device cpu
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import train_ctc  # noqa: E402
from helper.cli import HelpFormatter  # noqa: E402
from helper.train.ctc import CTCObjective  # noqa: E402
from helper.core.device import get_device  # noqa: E402
from helper.core.errors import UserError, run_cli  # noqa: E402
from helper.core.speed import autocast, device_name, prepare_model, write_bench_json  # noqa: E402
from helper.cli.speed import add_speed_args, describe, resolve_speed_args  # noqa: E402
from helper.train.setup import build_sgd  # noqa: E402
from models import available_models, create_model  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--model", default="resnext32_16x4d", choices=available_models(), metavar="MODEL",
                        help="architecture (paper: resnext32_16x4d)")
    parser.add_argument("--batch_size", type=int, default=64, help="batch size (paper: 64)")
    parser.add_argument("--nce_k", type=int, default=16384, help="CRD negatives per sample (paper: 16384)")
    parser.add_argument("--n_data", type=int, default=50000, help="memory rows = training-set size (CIFAR-100: 50000)")
    parser.add_argument("--num_classes", type=int, default=100, help="classes (CIFAR-100: 100)")
    parser.add_argument("--stage_two_loss", default="crd", choices=["crd", "itrd"], help="stage 2 objective")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default: 50 on GPU, 5 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 10 on GPU, 1 on CPU)")
    parser.add_argument("--device", default=None, help="cuda, cpu; default: CUDA when present")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    return add_speed_args(parser, loader=False)


def ctc_args(args):
    """train_ctc.py's defaults with the benchmark's sizes."""
    return train_ctc.get_args_parser().parse_args(
        ["--model", args.model, "--batch_size", str(args.batch_size), "--nce_k", str(args.nce_k),
         "--stage_two_loss", args.stage_two_loss])


def synthetic_batch(args, device):
    images = torch.randn(args.batch_size, 3, 32, 32, device=device)
    targets = torch.randint(args.num_classes, (args.batch_size,), device=device)
    idx = torch.randint(args.n_data, (args.batch_size,), device=device)
    contrast_idx = torch.randint(args.n_data, (args.batch_size, args.nce_k + 1), device=device)
    contrast_idx[:, 0] = idx
    return [images, targets, idx, contrast_idx]


def time_steps(step, steps, warmup, device):
    """Mean seconds per call of `step()` after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def main(args):
    device = get_device(args.device)
    gpu = device.type == "cuda"
    steps = args.steps or (50 if gpu else 5)
    warmup = args.warmup if args.warmup is not None else (10 if gpu else 1)
    if min(args.batch_size, args.nce_k, args.n_data, args.num_classes, steps) < 1 or args.nce_k >= args.n_data:
        raise UserError("--batch_size, --nce_k, --n_data, --num_classes and --steps must be positive and "
                        "--nce_k below --n_data.")
    resolve_speed_args(args, device)             # the defaults train_ctc.py resolves (and cuDNN autotuning)
    torch.manual_seed(0)
    opts = ctc_args(args)
    model = prepare_model(create_model(args.model, num_classes=args.num_classes).to(device), args)
    ctc = CTCObjective(opts, model, args.n_data, device)
    optimizer = build_sgd(ctc.parameters(), opts)
    batch = synthetic_batch(args, device)
    model.train()

    def train_step(compute_loss):
        def step():
            with autocast(device, args.amp):
                loss = compute_loss(batch)[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step

    def plain_loss(b):
        return (F.cross_entropy(model(b[0]), b[1]),)

    def set_stage(stage):
        ctc.stage = stage
        return train_step(ctc.compute_loss)

    @torch.no_grad()
    def frozen_forward():
        with autocast(device, args.amp):
            ctc.frozen(batch[0], is_feat=True)

    times = {"plain": time_steps(train_step(plain_loss), steps, warmup, device),
             "stage_two": time_steps(set_stage(2), steps, warmup, device),
             "stage_one": time_steps(set_stage(1), steps, warmup, device),
             "frozen_forward": time_steps(frozen_forward, steps, warmup, device)}
    overhead = 100.0 * (times["stage_two"] - times["plain"]) / times["plain"]
    contrastive = times["stage_two"] - times["plain"] - times["frozen_forward"]
    result = {
        "device": device_name(device), "torch": torch.__version__, "model": args.model,
        "batch_size": args.batch_size, "nce_k": args.nce_k, "n_data": args.n_data,
        "stage_two_loss": args.stage_two_loss, "steps": steps, "speed": describe(args),
        "seconds_per_step": times,
        "stage_two_overhead_percent": overhead,
        "contrastive_share_of_stage_two_step_percent": 100.0 * contrastive / times["stage_two"],
        "stage_one_overhead_percent": 100.0 * (times["stage_one"] - times["plain"]) / times["plain"],
    }
    print(f"{result['device']} | torch {result['torch']} | {args.model} batch {args.batch_size} "
          f"nce_k {args.nce_k} n_data {args.n_data} | {steps} steps | {describe(args)}")
    print(f"plain cross-entropy step : {1000 * times['plain']:8.2f} ms")
    print(f"CTC stage-2 step ({args.stage_two_loss})  : {1000 * times['stage_two']:8.2f} ms "
          f"({overhead:+.1f}% over plain)")
    print(f"  of which frozen forward: {1000 * times['frozen_forward']:8.2f} ms, "
          f"{args.stage_two_loss} part (heads, loss, memory): {1000 * contrastive:.2f} ms "
          f"({result['contrastive_share_of_stage_two_step_percent']:.1f}% of the stage-2 step)")
    print(f"CTC stage-1 step         : {1000 * times['stage_one']:8.2f} ms "
          f"({result['stage_one_overhead_percent']:+.1f}% over plain)")
    write_bench_json(args.json, result)
    return result


if __name__ == "__main__":
    run_cli(main, get_args_parser())
