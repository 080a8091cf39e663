"""Every GPU number docs/speed.md lists as not yet measured, in one command sized for a short GPU slot.

    bash scripts/gpu_check.sh                 # on the GPU: at most 8 minutes on one H100
    bash scripts/gpu_check.sh --quick         # small sizes, on whatever device there is (the test suite's)

Parts, each its own process with its own time limit (a part that runs over is stopped and the others go on;
with --quick the limits are QUICK_SLACK times longer):
  bench       bench.py's training, CTC, probe, MINE and discriminability rows at the paper's sizes
              (k-means and Recall@1 against scikit-learn among them);
  flags       training images/s with each speed flag alone against all off (are the CUDA defaults the fastest?);
  mine_check  MINE bf16 (and TF32) against fp32 on known-MI cases at the paper's critic size;
  memory      peak device memory of one training step and one MINE step at the paper's sizes;
  pipeline    vanilla, CTC across its switch, transfer, discriminability, MINE and plot on synthetic CIFAR-100
              and CINIC-10 files (the real on-disk formats), one epoch each stage; runs, data and figures
              in OUT/parts/pipeline/.
After every part, OUT/gpu_check.json and OUT/gpu_check.md are rewritten with all that is known so far.
"""
import argparse
import glob
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDGET_S = 480                   # the whole check: 8 minutes
LIMITS_S = {"bench": 150, "flags": 110, "mine_check": 90, "memory": 40, "pipeline": 90}   # adds up to BUDGET_S
QUICK_SLACK = 4                  # --quick's limits and budget x this: it checks that each part runs, not how fast,
                                 # and a CPU shared with other jobs can take minutes over the small sizes


def bench_argv(quick):
    """bench.py's sizes: the paper's by default; with `quick` the smallest that runs each piece's code."""
    if quick:
        return ["--quick", "--model", "resnet8", "--batch_size", "16", "--train_steps", "1", "--train_warmup", "1",
                "--train_images", "32", "--num_workers", "0", "--disc_rows", "200", "--disc_dim", "16",
                "--disc_classes", "5", "--kmeans_n_init", "1", "--ablate", "channels_last"]
    return []


def part_commands(quick, parts_dir):
    """name -> argv of each part; each writes its JSON to parts_dir/<name>.json."""
    python, bench = sys.executable, os.path.join(REPO, "bench.py")

    def out(name):
        return os.path.join(parts_dir, f"{name}.json")

    mine_sizes = (["--rows", "300", "--dim_a", "16", "--dim_b", "16", "--batch_size", "64", "--hidden_size", "16",
                   "--iters", "10"] if quick else ["--iters", "1000"])          # paper's critic: the defaults
    # --quick: no ctc (test_bench runs it), and flags in the bench part's process (one start-up less)
    pieces = ["train", "probe", "mine", "discriminability"] + (["flags"] if quick else ["ctc"])
    self_part = [python, "-m", "scripts.gpu_check"] + (["--quick"] if quick else [])
    flags = {} if quick else {"flags": [python, bench, "--only", "flags", "--json", out("flags")]}
    return {
        "bench": [python, bench, *bench_argv(quick), "--only", *pieces, "--json", out("bench")],
        **flags,
        "mine_check": [python, bench, "mine", "--check", *mine_sizes,
                       "--device", "cuda" if torch.cuda.is_available() else "cpu", "--json", out("mine_check")],
        "memory": [*self_part, "--part", "memory", "--part_json", out("memory")],
        "pipeline": [*self_part, "--part", "pipeline", "--part_json", out("pipeline")],
    }


def run_part(argv, limit, log_path):
    """(status, seconds): 'ok', 'failed (exit N)' or 'stopped at its N s limit'; output to log_path."""
    start = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)          # the part and any process it started
            process.wait()
            return f"stopped at its {limit:.0f} s limit", time.monotonic() - start
    return ("ok" if code == 0 else f"failed (exit {code})"), time.monotonic() - start


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def markdown(record):
    """The report as Markdown: one line per part, then each part's numbers."""
    lines = [f"# gpu_check: {record['device_name']} | torch {record['torch']} | {record['date']}"
             f"{' | quick' if record['quick'] else ''}", "",
             "| part | status | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {p['status']} | {p['seconds']:.0f} |" for name, p in record["parts"].items()]
    rows = [r for name in ("bench", "flags") for r in ((record["parts"].get(name) or {}).get("result") or {})
            .get("results", [])]
    if rows:
        lines += ["", "| benchmark | unit | reference | ours | ratio |", "|---|---|---|---|---|"]
        lines += [f"| {r['name']} | failed: {r['error']} | | | |" if "error" in r else
                  f"| {r['name']} | {r['unit']} | {r['reference']:.2f} | {r['ours']:.2f} | {r['ratio']:.2f}x |"
                  for r in rows]
    for run in ((record["parts"].get("mine_check") or {}).get("result") or {}).get("runs", []):
        lines += ["", f"MINE precision on {run['device']} (bf16 within tolerance of fp32: "
                      f"{'yes' if run['bf16_within_tolerance'] else 'no'})", "",
                  "| case | truth | precision | mi | minus fp32 | seconds |", "|---|---|---|---|---|---|"]
        lines += [f"| {c['case']} | {c['truth']:.3f} | {c['precision']} | {c['mi']:.3f} | {c['minus_fp32']:+.3f} "
                  f"| {c['seconds']:.1f} |" for c in run["check"]]
    memory = (record["parts"].get("memory") or {}).get("result")
    if memory:
        lines += ["", f"Peak memory ({memory['measure']}):", "", "| what | MiB |", "|---|---|"]
        lines += [f"| {what} | {mib:.0f} |" for what, mib in memory["peak_mib"].items()]
    pipeline = (record["parts"].get("pipeline") or {}).get("result")
    if pipeline:
        lines += ["", f"Pipeline on synthetic CIFAR-100 -> CINIC-10 ({pipeline['model']}, {pipeline['device']}):", "",
                  "| step | status | seconds |", "|---|---|---|"]
        lines += [f"| {s['step']} | {'ok' if s['status'] == 0 else 'exit ' + str(s['status'])} | {s['seconds']:.1f} |"
                  for s in pipeline["steps"]]
    return "\n".join(lines) + "\n"


def write_report(out, record):
    """OUT/gpu_check.json and OUT/gpu_check.md, rewritten whole (a stopped check still leaves both)."""
    with open(os.path.join(out, "gpu_check.json"), "w") as handle:
        json.dump(record, handle, indent=1, default=str)
    with open(os.path.join(out, "gpu_check.md"), "w") as handle:
        handle.write(markdown(record))


def check(args):
    from benchmarks.common import device_record
    from helper.core.device import get_device
    out = os.path.abspath(args.out)
    parts_dir = os.path.join(out, "parts")
    os.makedirs(parts_dir, exist_ok=True)
    record = {**device_record(get_device(None)), "python": platform.python_version(), "quick": args.quick,
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "parts": {}}
    slack = QUICK_SLACK if args.quick else 1
    deadline = time.monotonic() + BUDGET_S * slack
    for name, argv in part_commands(args.quick, parts_dir).items():
        limit = max(1.0, min(LIMITS_S[name] * slack, deadline - time.monotonic()))
        print(f"== {name} (limit {limit:.0f} s)", flush=True)
        status, seconds = run_part(argv, limit, os.path.join(parts_dir, f"{name}.log"))
        record["parts"][name] = {"status": status, "seconds": seconds, "command": argv,
                                 "result": read_json(os.path.join(parts_dir, f"{name}.json"))}
        print(f"   {status} in {seconds:.0f} s", flush=True)
        write_report(out, record)
    print(f"report: {os.path.join(out, 'gpu_check.md')} (numbers: gpu_check.json; each part's log: {parts_dir}/)")
    return 0 if all(p["status"] == "ok" for p in record["parts"].values()) else 1


def peak_memory(quick):
    """Peak memory (MiB) of one training step at the paper's model and batch, and one MINE step at its sizes."""
    from helper.core.device import get_device
    from helper.core.speed import Speed, autocast, prepare_model
    from helper.sweep.mi import MineConfig, estimate_mi
    from models import create_model
    device = get_device(None)
    cuda = device.type == "cuda"
    model_name, batch, mine_rows, dim_a, dim_b, hidden = (
        ("resnet8", 8, 64, 32, 16, 16) if quick else ("resnext32_16x4d", 64, 10000, 3072, 512, 1024))

    def peak():
        if cuda:
            return torch.cuda.max_memory_allocated(device) / 2 ** 20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # the process's, in KiB on Linux

    speed = Speed(amp=cuda, channels_last=cuda)                               # the CUDA training defaults
    model = prepare_model(create_model(model_name, num_classes=100).to(device), speed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    images = torch.randn(batch, 3, 32, 32, device=device)
    with autocast(device, speed.amp):
        loss = torch.nn.functional.cross_entropy(model(images), torch.zeros(batch, dtype=torch.long, device=device))
    loss.backward()
    optimizer.step()
    result = {f"training step, {model_name}, batch {batch}": peak()}
    del model, optimizer, images, loss
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    a, b = torch.randn(mine_rows, dim_a), torch.randn(mine_rows, dim_b)
    critic = MineConfig(iters=2, batch_size=min(5000, mine_rows), hidden_size=hidden, window=1, progress=False)
    estimate_mi(a, b, critic, device=device)
    result[f"MINE step, {dim_a}+{dim_b}-d, batch {min(5000, mine_rows)}, hidden {hidden}"] = peak()
    measure = "torch.cuda.max_memory_allocated" if cuda else "the process's peak resident memory (CPU)"
    return {"device": str(device), "measure": measure, "peak_mib": result}


def pipeline(quick, work):
    """Each script of the pipeline on synthetic CIFAR-100 (source) and CINIC-10 (target) files, in this
    process, under `work` (emptied first); a record of every step's exit status and seconds."""
    import shutil

    from dataset.cifar import PUBLISHED_MD5, file_md5
    from helper.core.device import get_device
    from tests.fakedata import write_fake_cifar, write_fake_cinic
    model = "resnet8" if quick else "resnext32_16x4d"
    shutil.rmtree(work, ignore_errors=True)
    data = os.path.join(work, "data")
    # the test split of CIFAR-100 holds at least 100 images: k-means of discriminability.py takes 100 clusters
    write_fake_cifar(data, num_classes=100, n_train=100 if quick else 5000, n_test=100 if quick else 1000)
    write_fake_cinic(data, n_per_class=2 if quick else 20)
    for key in PUBLISHED_MD5:                    # the synthetic files stand in for the published ones
        path = os.path.join(data, *key.split("/"))
        if os.path.isfile(path):
            PUBLISHED_MD5[key] = file_md5(path)
    paths = ["--data_folder", data, "--model_path", os.path.join(work, "model"), "--tb_path", os.path.join(work, "tb"),
             "--no_progress"]
    train = ["--dataset", "cifar100", "--model", model, "--batch_size", "32" if quick else "64", "--save_freq", "1",
             *paths]
    sweep = ["--model", model, "--skip", "1", *paths]
    mine = ["--source_dataset", "cifar100", "--dataset", "cinic10", "--iter_num", "10" if quick else "200",
            "--batch_size", "64" if quick else "500", "--hidden_size", "16" if quick else "1024", "--window", "5"]
    steps = [("train_vanilla.py", [*train, "--epochs", "1", "--note", "vanilla"]),
             ("train_ctc.py", [*train, "--epochs", "2", "--stage_two_epoch", "1", "-a", "0.5", "--note", "ctc",
                               "--nce_k", "16" if quick else "4096"])]
    record = {"device": str(get_device(None)), "model": model, "folder": work, "steps": []}
    for script, argv in steps:
        record["steps"].append(timed_step(script, argv))
    runs = sorted(glob.glob(os.path.join(work, "model", "*")))
    for run in runs:
        last = ["--start_epoch", "2" if run.endswith("ctc") else "1"]    # each run's last checkpoint
        for script, argv in (("transfer.py", ["--source_dataset", "cifar100", "--target_dataset", "cinic10",
                                              "--epoch", "2" if quick else "30"]),
                             ("discriminability.py", ["--dataset", "cifar100"]),
                             ("mine.py", ["--mode", "xt", *mine]), ("mine.py", ["--mode", "ty", *mine])):
            record["steps"].append(timed_step(script, [*argv, "--ckpt_path", run, *last, *sweep]))
    record["steps"].append(timed_step("plot.py", [*runs, "--out", os.path.join(work, "figures")]))
    return record


def timed_step(script, argv):
    """{'step': script and its run, 'status': exit status, 'seconds'} of one script's main, in this process."""
    from scripts.run_steps import run_command
    start = time.monotonic()
    status = run_command(script, argv)
    run = os.path.basename(argv[argv.index("--ckpt_path") + 1]) if "--ckpt_path" in argv else ""
    return {"step": f"{script} {run}".strip(), "status": status if isinstance(status, int) else 1,
            "seconds": time.monotonic() - start}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes on any device: under a minute on a CPU")
    parser.add_argument("--out", default=os.path.join("save", "bench"),
                        help="folder of gpu_check.json, gpu_check.md and each part's log (default save/bench)")
    parser.add_argument("--part", choices=("memory", "pipeline"), help=argparse.SUPPRESS)   # one part's process
    parser.add_argument("--part_json", help=argparse.SUPPRESS)
    return parser


def main(args):
    if args.part:
        if args.part == "memory":
            result = peak_memory(args.quick)
        else:                                      # its runs, data and figures beside its JSON
            result = pipeline(args.quick, os.path.splitext(args.part_json)[0])
        with open(args.part_json, "w") as handle:
            json.dump(result, handle, indent=1)
        return 0 if all(s["status"] == 0 for s in result.get("steps", [])) else 1
    return check(args)


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
