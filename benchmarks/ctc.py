"""Seconds per training step of CTC's stage 2 (and stage 1) versus plain cross-entropy.

Same model, batch, SGD optimiser and speed flags (train_ctc.py's: bf16 autocast and
channels_last on CUDA); synthetic images, labels, indices and CRD negatives already on
the device, so only the step is timed. Stage 2 = forward
and backward of the model + frozen-network forward + CRD (embeds, 2 x (B, K+1)
memory reads, NCE, memory update); the time is split into the frozen forward
and the contrastive part. Uses `helper.train.ctc.CTCObjective`, the code train_ctc.py runs.

    python bench.py ctc --model resnext32_16x4d --batch_size 64 --nce_k 16384 --n_data 50000
    python bench.py ctc --model resnet8 --steps 5 --device cpu
"""
import argparse

import torch
import torch.nn.functional as F

import train_ctc
from benchmarks.common import device_name, ratio_row, time_calls, write_bench_json
from helper.cli import HelpFormatter
from helper.cli.speed import add_speed_args, describe, resolve_speed_args, speed_argv, speed_config
from helper.cli.train import ctc_config, sgd_config
from helper.core.device import get_device
from helper.core.errors import UserError
from helper.core.speed import autocast, prepare_model
from helper.train.ctc import CTCObjective
from helper.train.setup import build_sgd
from models import available_models, create_model


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


def main(args):
    device = get_device(args.device)
    gpu = device.type == "cuda"
    steps = args.steps or (50 if gpu else 5)
    warmup = args.warmup if args.warmup is not None else (10 if gpu else 1)
    if min(args.batch_size, args.nce_k, args.n_data, args.num_classes, steps) < 1 or args.nce_k >= args.n_data:
        raise UserError("--batch_size, --nce_k, --n_data, --num_classes and --steps must be positive and "
                        "--nce_k below --n_data.")
    speed = resolve_speed_args(args, device)     # the defaults train_ctc.py resolves (and cuDNN autotuning)
    torch.manual_seed(0)
    opts = ctc_args(args)
    model = prepare_model(create_model(args.model, num_classes=args.num_classes).to(device), speed_config(speed))
    ctc = CTCObjective(ctc_config(opts), sgd_config(opts), model, args.n_data, device)
    optimizer = build_sgd(ctc.parameters(), sgd_config(opts))
    batch = synthetic_batch(args, device)
    model.train()

    def train_step(compute_loss):
        def step():
            with autocast(device, speed.amp):
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
        with autocast(device, speed.amp):
            ctc.frozen(batch[0], is_feat=True)

    def seconds_per_step(step):
        return time_calls(step, steps, warmup, device)[0] / steps

    times = {"plain": seconds_per_step(train_step(plain_loss)),
             "stage_two": seconds_per_step(set_stage(2)),
             "stage_one": seconds_per_step(set_stage(1)),
             "frozen_forward": seconds_per_step(frozen_forward)}
    overhead = 100.0 * (times["stage_two"] - times["plain"]) / times["plain"]
    contrastive = times["stage_two"] - times["plain"] - times["frozen_forward"]
    result = {
        "device": device_name(device), "torch": torch.__version__, "model": args.model,
        "batch_size": args.batch_size, "nce_k": args.nce_k, "n_data": args.n_data,
        "stage_two_loss": args.stage_two_loss, "steps": steps, "speed": describe(speed),
        "seconds_per_step": times,
        "stage_two_overhead_percent": overhead,
        "contrastive_share_of_stage_two_step_percent": 100.0 * contrastive / times["stage_two"],
        "stage_one_overhead_percent": 100.0 * (times["stage_one"] - times["plain"]) / times["plain"],
    }
    print(f"{result['device']} | torch {result['torch']} | {args.model} batch {args.batch_size} "
          f"nce_k {args.nce_k} n_data {args.n_data} | {steps} steps | {describe(speed)}")
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


def table_row(args, device):
    """bench.py's ctc row: the stage-2 step against the plain step, at the table's model and speed flags."""
    sizes = (["--model", "resnet8", "--nce_k", "256", "--n_data", "2048", "--steps", "10"] if args.quick else
             ["--model", args.model, "--batch_size", str(args.batch_size)])
    speed = speed_argv(resolve_speed_args(args, device))            # the same flags as the train row
    record = main(get_args_parser().parse_args(sizes + speed + ["--device", str(device)]))
    times = record["seconds_per_step"]
    return ratio_row(f"ctc stage-2 step {record['model']} k{record['nce_k']}", "ms/step", 1000 * times["plain"],
                     1000 * times["stage_two"], record, ratio=times["plain"] / times["stage_two"])
