"""Command-line conventions shared by the scripts: `--help` that shows every default, and the
original code's flags, accepted with their original meaning (docs/original_command_lines.md)."""
import argparse
import sys


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and `(default: X)` after every flag whose help does not
    already say what its default is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class NoEffectFlag(argparse.Action):
    """An original flag whose accepted values change nothing here: a one-line notice on stderr.

    `accepted`: the values that mean what this repository always does (None: any value);
    another value would ask for something this repository does not do, and is refused.
    The flag leaves no attribute in the parsed arguments (so no trace in args.json).
    """

    def __init__(self, option_strings, dest, accepted=None, reason="", **kwargs):
        kwargs.setdefault("default", argparse.SUPPRESS)
        self.accepted, self.reason = accepted, reason
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        if self.accepted is not None and value not in self.accepted:
            allowed = ", ".join(str(v) for v in self.accepted)
            parser.error(f"{option_string} {value} is not supported: {self.reason} (accepted for the original "
                         f"command lines: {allowed}).")
        print(f"note: {option_string} {value} has no effect here: {self.reason}", file=sys.stderr)


# --augmentation of the original scripts -> this repository's --augment
ORIGINAL_AUGMENTATION = {"none": "standard", "auto": "auto"}


class OriginalAugmentation(argparse.Action):
    """--augmentation none|auto with the original's meaning, stored as --augment standard|auto."""

    def __init__(self, option_strings, dest, **kwargs):
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, choices=sorted(ORIGINAL_AUGMENTATION), **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.augment = ORIGINAL_AUGMENTATION[value]


def add_original_training_flags(group):
    """The original train_vanilla.py / train_ctc.py flags that have no own row in helper.cli.train.training_parser."""
    group.add_argument("--augmentation", action=OriginalAugmentation,
                       help="the original's spelling: none = random crop + flip (its default; --augment standard), "
                            "auto = AutoAugment + Cutout (--augment auto)")
    group.add_argument("--optimizer", action=NoEffectFlag, accepted=("sgd",),
                       reason="SGD with --momentum is the only optimiser here",
                       help="the original's optimiser choice; accepted: sgd")
    group.add_argument("--net_size", action=NoEffectFlag, type=float, accepted=(1.0,),
                       reason="the registered architectures have their published widths",
                       help="the original's width multiplier; accepted: 1.0")
