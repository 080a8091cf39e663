"""Run several of the repository's script command lines in one Python process, in order, stopping at the
first that fails. Each process start pays the imports again (torch, torchvision: about 5 s of CPU each), which
on a small CPU costs more than a sweep over a few dozen small checkpoints; one process pays them once.

    python -m scripts.run_steps train_vanilla.py --epochs 90 ... :: transfer.py --ckpt_path RUN ... :: mine.py ...

Each command is one of the scripts named below, with exactly the flags it takes on the command line, run
from the current folder. The exit status is that of the first command that fails (a user error: 2), else 0.
With STEP_TIMES set to a folder, each finished command appends a line (step name, seconds, end time) to
STEP_TIMES/<pid>.tsv, from which `python -m scripts.step_times` prints where a pipeline's time went.
"""
import importlib
import os
import sys
import time

from helper.core.errors import INTERRUPTED_STATUS, run_cli

SCRIPTS = ("train_vanilla.py", "train_ctc.py", "transfer.py", "discriminability.py", "mine.py")
SEPARATOR = "::"


def split_commands(argv):
    """['a.py', '-x', '::', 'b.py'] -> [['a.py', '-x'], ['b.py']]; empty commands dropped."""
    commands, current = [], []
    for token in argv:
        if token == SEPARATOR:
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [c for c in commands + [current] if c]


def step_name(script, args):
    """'train_vanilla', 'transfer', 'mine xt digits_b holdout': the step a timing line is summed under."""
    words = [script[:-len(".py")]]
    if words == ["mine"]:
        words += [args[args.index(flag) + 1] for flag in ("--mode", "--dataset") if flag in args[:-1]]
        words += ["holdout"] if "--holdout" in args else []
    return " ".join(words)


def append_timing(folder, name, seconds):
    """'name<TAB>seconds<TAB>end (Unix time)' appended to folder/<pid>.tsv (the folder made if needed)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{os.getpid()}.tsv"), "a") as handle:
        handle.write(f"{name}\t{seconds:.2f}\t{time.time():.2f}\n")


def run_command(script, args):
    """Exit status of one script call: its main's int return value, or its SystemExit code (0 otherwise)."""
    module = importlib.import_module(script[:-len(".py")])
    try:
        result = run_cli(module.main, module.get_args_parser(), args)
    except SystemExit as exit_:
        result = exit_.code
    if result is None or not isinstance(result, (int, str)):
        return 0                            # training returns its run, not a status
    return result if isinstance(result, int) else 1


def main(argv):
    timings = os.environ.get("STEP_TIMES")
    commands = split_commands(argv)
    unknown = [c[0] for c in commands if c[0] not in SCRIPTS]
    if not commands or unknown:
        print(f"error: run_steps.py runs commands of {', '.join(SCRIPTS)}, separated by '{SEPARATOR}'"
              + (f"; got {', '.join(unknown)}" if unknown else "") + ".", file=sys.stderr)
        return 2
    for script, *args in commands:
        print(f"\n== {script} {' '.join(args)}", flush=True)
        start = time.perf_counter()
        status = run_command(script, args)
        if timings and not status:
            append_timing(timings, step_name(script, args), time.perf_counter() - start)
        if status == INTERRUPTED_STATUS:        # run_cli has said so in one line
            return status
        if status:
            print(f"error: {script} exited with status {status}; the steps after it did not run.", file=sys.stderr)
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
