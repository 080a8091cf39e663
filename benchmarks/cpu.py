"""CPU training throughput against the processor's limit, and which variant long CPU runs should use.

For each model and batch size: SGD steps on the device loader (synthetic CIFAR-shaped uint8 images whose
class can be learnt, crop + flip), from the same initialisation over the same batches, with

  fp32 eager       the reference (all cores as intra-op threads; what the tests run);
  channels_last    NHWC weights and inputs;
  compile          torch.compile (its compilation in the untimed warm-up steps);
  bf16             bf16 autocast (oneDNN runs bf16 convolutions natively where the CPU has AVX-512 BF16
                   or AMX, and emulates them otherwise);
  channels_last+bf16;
  1 thread         one intra-op thread;
  N procs x 1 thread
                   N = the cores, each process one thread on its own copy: the throughput of N runs at once.

Per variant: images/s, its ratio to the reference, the achieved FLOP/s as a fraction of the CPU's fp32 peak
(FLOPs per image counted by torch.utils.flop_counter on one forward + backward; the peak formula from
lscpu is printed), and the tolerance check: the mean loss of the last timed steps within --tolerance
(relative) of the reference's.

    python bench.py cpu                      # resnet8 and resnet20, batch 64 and 128
    python bench.py cpu --quick              # resnet8, batch 64, a few steps: seconds
"""
import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import device_record, time_calls, write_bench_json
from benchmarks.train import fresh_model, sgd_step
from dataset import DATASETS, build_transform
from dataset.device_loader import DeviceLoader
from dataset.variants import ArrayDataset
from helper.cli import HelpFormatter
from helper.core.speed import Speed, prepare_model

VARIANTS = {                                # name -> (Speed, intra-op threads: 0 = all cores)
    "fp32 eager": (Speed(), 0),
    "channels_last": (Speed(channels_last=True), 0),
    "compile": (Speed(compile=True), 0),
    "bf16": (Speed(amp=True), 0),
    "channels_last+bf16": (Speed(amp=True, channels_last=True), 0),
    "1 thread": (Speed(), 1),
}
PROCESSES = "procs x 1 thread"            # the variant run as separate processes
REFERENCE = "fp32 eager"
FMA_UNITS = 2                              # vector FMA pipes per core on current x86 server cores (Zen 2-4, Xeon)


def cpu_peak():
    """(fp32 FLOP/s, the formula as text): cores x clock x fp32 lanes x 2 (FMA) x FMA_UNITS, from lscpu."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    fields = dict(re.findall(r"^([^:\n]+):\s*(.*)$", text, re.M))
    cores = int(fields.get("CPU(s)", os.cpu_count() or 1))
    mhz = float(fields.get("CPU max MHz") or fields.get("CPU MHz") or cpuinfo_mhz() or 0)
    flags = fields.get("Flags", "").split()
    lanes, isa = (16, "AVX-512") if "avx512f" in flags else (8, "AVX2") if "avx2" in flags else (4, "SSE")
    fma = 2 if "fma" in flags or "avx512f" in flags else 1
    peak = cores * mhz * 1e6 * lanes * fma * FMA_UNITS
    formula = (f"{cores} cores x {mhz / 1000:.2f} GHz x {lanes} fp32 lanes ({isa}) x {fma} (FMA) x {FMA_UNITS} "
               f"FMA units = {peak / 1e9:.0f} GFLOP/s fp32")
    bf16 = "native bf16 (avx512_bf16/amx)" if {"avx512_bf16", "amx_bf16"} & set(flags) else "no bf16 instructions"
    return peak, f"{formula}; {bf16}"


def cpuinfo_mhz():
    """The first 'cpu MHz' of /proc/cpuinfo (lscpu omits the clock in some virtual machines), or None."""
    try:
        with open("/proc/cpuinfo") as handle:
            found = re.search(r"^cpu MHz\s*:\s*([\d.]+)", handle.read(), re.M)
    except OSError:
        return None
    return float(found.group(1)) if found else None


def learnable_cifar(n, seed=0):
    """n CIFAR-10-shaped uint8 images whose class shows in them (a fixed random template per class, half
    mixed with noise), so the loss falls within a few steps and the tolerance check compares real learning."""
    rng = np.random.default_rng(seed)
    info = DATASETS["cifar10"]
    templates = rng.integers(0, 256, (info.num_classes, 32, 32, 3))
    targets = rng.integers(0, info.num_classes, n)
    noise = rng.integers(0, 256, (n, 32, 32, 3))
    data = ((templates[targets] + noise) // 2).astype(np.uint8)
    return ArrayDataset(data, targets, info, build_transform(info, "standard"))


def training_flops_per_image(model_name, batch_size):
    """FLOPs of one forward + backward of `model_name` per 32x32 image, as torch's flop counter counts them."""
    model = fresh_model(model_name, torch.device("cpu"))
    images = torch.randn(batch_size, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(images), torch.zeros(batch_size, dtype=torch.long)).backward()
    return counter.get_total_flops() / batch_size


def train_losses(model_name, speed, batch_size, steps, warmup):
    """(images/s over `steps` timed SGD steps after `warmup`, the timed steps' losses): one variant, CPU."""
    device = torch.device("cpu")
    dataset = learnable_cifar(batch_size * (steps + warmup))
    batches = iter(DeviceLoader(dataset, batch_size, device, seed=0, channels_last=speed.channels_last))
    step = sgd_step(prepare_model(fresh_model(model_name, device), speed), batches, device, speed.amp, allow_cpu=True)
    seconds, results = time_calls(step, steps, warmup, device)
    return batch_size * steps / seconds, [float(loss) for _, loss in results]


def run_variant(model_name, speed, threads, batch_size, steps, warmup):
    """train_losses with `threads` intra-op threads (0: leave as is), the thread count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return train_losses(model_name, speed, batch_size, steps, warmup)
    finally:
        torch.set_num_threads(before)


def run_processes(count, model_name, batch_size, steps, warmup):
    """(summed images/s, the first process's losses) of `count` single-thread processes started together.

    Each times its own steps after its warm-up, so their imports (seconds apart at most) fall outside the
    timing; the sum is what `count` runs at once get from the cores."""
    command = [sys.executable, "-m", "benchmarks.cpu", "--worker", "--models", model_name,
               "--batch_sizes", str(batch_size), "--steps", str(steps), "--warmup", str(warmup)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workers = [subprocess.Popen(command, env=env, cwd=root, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    results = []
    for worker in workers:
        out, _ = worker.communicate()
        if worker.returncode:
            raise RuntimeError(f"a single-thread benchmark process exited with status {worker.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return sum(r["images_per_s"] for r in results), results[0]["losses"]


def tail_loss(losses, last=5):
    """The mean of the last `last` losses: the tolerance check's number (one step's loss is noisier)."""
    tail = losses[-last:]
    return sum(tail) / len(tail)


def config_rows(args, model_name, batch_size, peak):
    """The rows {model, batch, variant, images_per_s, ratio, peak_fraction, loss, loss_rel_diff,
    within_tolerance} of one model and batch size, every variant of args.variants timed."""
    threads = torch.get_num_threads()
    flops = training_flops_per_image(model_name, batch_size)
    results = {}
    for name in args.variants:
        if name == PROCESSES:
            results[f"{threads} {name}"] = run_processes(threads, model_name, batch_size, args.steps, args.warmup)
        else:
            speed, variant_threads = VARIANTS[name]
            results[name] = run_variant(model_name, speed, variant_threads, batch_size, args.steps, args.warmup)
    reference_speed, reference_losses = results[REFERENCE]
    rows = []
    for name, (speed, losses) in results.items():
        difference = abs(tail_loss(losses) - tail_loss(reference_losses)) / abs(tail_loss(reference_losses))
        rows.append({"model": model_name, "batch": batch_size, "variant": name, "images_per_s": speed,
                     "ratio": speed / reference_speed, "gflop_per_image": flops / 1e9,
                     "peak_fraction": speed * flops / peak, "loss": tail_loss(losses),
                     "loss_rel_diff": difference, "within_tolerance": difference <= args.tolerance})
    return rows


def print_header(record):
    print(f"CPU training throughput, synthetic 32x32 images on the device loader, {record['steps']} timed steps "
          f"after {record['warmup']} warm-up, reference fp32 eager on {record['threads']} threads")
    print(f"peak: {record['peak_formula']}")
    print(f"tolerance: mean loss of the last timed steps within {100 * record['tolerance']:.1f} % of fp32 eager's")
    print(f"{'model':<10}{'batch':>6}  {'variant':<22}{'images/s':>10}{'ratio':>8}{'of peak':>9}{'loss':>9}"
          f"{'diff':>8}  check", flush=True)


def print_row(row):
    print(f"{row['model']:<10}{row['batch']:>6}  {row['variant']:<22}{row['images_per_s']:>10.0f}"
          f"{row['ratio']:>7.2f}x{100 * row['peak_fraction']:>8.1f}%{row['loss']:>9.4f}"
          f"{100 * row['loss_rel_diff']:>7.2f}%  {'pass' if row['within_tolerance'] else 'FAIL'}", flush=True)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet8", "resnet20"], help="models (the CPU experiments')")
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[64, 128], help="batch sizes")
    parser.add_argument("--variants", nargs="+", default=[*VARIANTS, PROCESSES], choices=[*VARIANTS, PROCESSES],
                        metavar="VARIANT", help=f"variants to time: {', '.join([*VARIANTS, PROCESSES])} "
                                                f"('{REFERENCE}' is always run, as the reference)")
    parser.add_argument("--steps", type=int, default=30, help="timed SGD steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, oneDNN set-up)")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="largest relative difference of the last steps' mean loss to fp32 eager's that passes")
    parser.add_argument("--quick", action="store_true", help="resnet8, batch 64, 6 steps after 1 warm-up")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the numbers to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)   # one process of PROCESSES
    return parser


def main(args):
    if args.quick:
        args.models, args.batch_sizes, args.steps, args.warmup = ["resnet8"], [64], 6, 1
    if args.worker:                   # a single-thread process of the 'procs x 1 thread' variant: JSON on stdout
        speed, losses = train_losses(args.models[0], Speed(), args.batch_sizes[0], args.steps, args.warmup)
        print(json.dumps({"images_per_s": speed, "losses": losses}))
        return 0
    if REFERENCE not in args.variants:
        args.variants = [REFERENCE, *args.variants]
    peak, formula = cpu_peak()
    record = {**device_record("cpu"), "peak_flops": peak, "peak_formula": formula,
              "threads": torch.get_num_threads(), "steps": args.steps, "warmup": args.warmup,
              "tolerance": args.tolerance, "rows": []}
    print_header(record)
    for model_name in args.models:
        for batch_size in args.batch_sizes:           # each configuration's rows printed and saved when done
            for row in config_rows(args, model_name, batch_size, peak):
                record["rows"].append(row)
                print_row(row)
            write_bench_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
