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
    """An original flag that the original parsed and ignored (or that means nothing here): any value is
    accepted, changes nothing, and gets a one-line notice on stderr.

    `record`: keep the value in the parsed arguments (so args.json shows the command line as given); the
    sweeps' flags are their results' protocol record, so a sweep's ignored flag is not kept. Absent when
    not given.
    """

    def __init__(self, option_strings, dest, reason="", record=True, **kwargs):
        kwargs.setdefault("default", argparse.SUPPRESS)
        self.reason, self.record = reason, record
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        print(f"note: {option_string} {value} has no effect here: {self.reason}", file=sys.stderr)
        if self.record:
            setattr(namespace, self.dest, value)


# --augmentation of the original scripts -> this repository's --augment. The original's loaders test for
# "auto" and "mine" (Resize 32, no augmentation); any other value, its "none" and "vanilla" defaults
# included, is random crop + flip.
ORIGINAL_AUGMENTATION = {"none": "standard", "vanilla": "standard", "auto": "auto", "mine": "none"}

# Data sets in the original scripts' --dataset choices that its code never loaded.
UNIMPLEMENTED_DATASETS = {
    "imagenet": "imagenet is in the original train_ctc.py's --dataset choices, but the original never loaded it "
                "(its training code reads CIFAR-100 only), and the models here take 32x32 images; there is no "
                "ImageNet loader. tinyimagenet (200 ImageNet classes, resized to 32x32) is the nearest set here",
}


def dataset_name(text):
    """argparse `type` of the training scripts' --dataset: a clear message for an original choice never
    implemented (imagenet); the parser's `choices` check the rest."""
    if text in UNIMPLEMENTED_DATASETS:
        raise argparse.ArgumentTypeError(UNIMPLEMENTED_DATASETS[text] + ".")
    return text


class OriginalAugmentation(argparse.Action):
    """--augmentation none|vanilla|auto|mine with the original's meaning, stored as --augment standard|auto|none."""

    def __init__(self, option_strings, dest, **kwargs):
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, choices=sorted(ORIGINAL_AUGMENTATION), **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.augment = ORIGINAL_AUGMENTATION[value]


def add_original_training_flags(group):
    """The original train_vanilla.py / train_ctc.py flags that have no own row in helper.cli.train.training_parser."""
    group.add_argument("--augmentation", action=OriginalAugmentation,
                       help="the original's spelling: none or vanilla = random crop + flip (its defaults; --augment "
                            "standard), auto = crop + flip + AutoAugment + Cutout (--augment auto), mine = no "
                            "augmentation (--augment none)")
    group.add_argument("--optimizer", action=NoEffectFlag,
                       reason="the original parsed it and always used SGD with --momentum, as here",
                       help="the original's optimiser flag, which it ignored; recorded in args.json, no effect")
    group.add_argument("--net_size", action=NoEffectFlag, type=float,
                       reason="the original parsed it and built the published widths, as here",
                       help="the original's width multiplier, which it ignored; recorded in args.json, no effect")
