"""Run several of the repository's script command lines in one Python process, in order, stopping at the
first that fails. Each process start pays the imports again (torch, torchvision: about 5 s of CPU each), which
on a small CPU costs more than a sweep over a few dozen small checkpoints; one process pays them once.

    python -m scripts.run_steps train_vanilla.py --epochs 90 ... :: transfer.py --ckpt_path RUN ... :: mine.py ...

Each command is one of the scripts named below, with exactly the flags it takes on the command line, run
from the current folder. The exit status is that of the first command that fails (a user error: 2), else 0.
"""
import importlib
import sys

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
    commands = split_commands(argv)
    unknown = [c[0] for c in commands if c[0] not in SCRIPTS]
    if not commands or unknown:
        print(f"error: run_steps.py runs commands of {', '.join(SCRIPTS)}, separated by '{SEPARATOR}'"
              + (f"; got {', '.join(unknown)}" if unknown else "") + ".", file=sys.stderr)
        return 2
    for script, *args in commands:
        print(f"\n== {script} {' '.join(args)}", flush=True)
        status = run_command(script, args)
        if status == INTERRUPTED_STATUS:        # run_cli has said so in one line
            return status
        if status:
            print(f"error: {script} exited with status {status}; the steps after it did not run.", file=sys.stderr)
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
