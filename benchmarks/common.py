"""What every benchmark does: name the device, time with warm-up and synchronisation, build a
reference-vs-ours row, print the ratio table and write the numbers beside the torch version and date."""
import datetime
import json
import os
import platform
import time

import torch



def device_name(device):
    """'NVIDIA H100 80GB HBM3' or the CPU's name: benchmark records say where they were taken."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def device_record(device):
    """The device, its name and the torch version: the first keys of every benchmark record."""
    return {"device": str(device), "device_name": device_name(device), "torch": torch.__version__}


def write_bench_json(path, record):
    """Write a benchmark's numbers to `path` (if given) with the torch version and date beside them,
    so figures from different machines and versions are never mixed."""
    if not path:
        return
    record = {"torch": torch.__version__, "date": datetime.datetime.now().isoformat(timespec="seconds"), **record}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(record, handle, indent=1, default=str)


def synchronize(device):
    """Wait for the device's queued work, so a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(step, calls, warmup, device):
    """(seconds, values): `calls` calls of `step()` timed after `warmup` untimed ones (compilation, cuDNN
    autotuning, loader start-up), the device synchronised on both sides; values are what the timed calls returned."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    values = [step() for _ in range(calls)]
    synchronize(device)
    return time.perf_counter() - start, values


def timed(device, fn):
    """(fn(), seconds), with the device synchronised on both sides."""
    seconds, (out,) = time_calls(fn, 1, 0, device)
    return out, seconds


def ratio_row(name, unit, reference, ours, config, ratio=None):
    """One row of the table: reference and ours in `unit`, ratio = ours / reference unless given
    (for a time, reference / ours: above 1 is faster either way)."""
    return {"name": name, "unit": unit, "reference": reference, "ours": ours,
            "ratio": ours / reference if ratio is None else ratio, "config": config}


def print_table(rows, header):
    """The rows as a table under `header`; a failed row shows its error instead of numbers."""
    print(header)
    width = max(len(row["name"]) for row in rows) + 2
    print(f"{'benchmark':<{width}}{'unit':<10}{'reference':>12}{'ours':>12}{'ratio':>9}")
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<{width}}failed: {row['error']}")
        else:
            print(f"{row['name']:<{width}}{row['unit']:<10}{row['reference']:>12.2f}{row['ours']:>12.2f}"
                  f"{row['ratio']:>8.2f}x")
