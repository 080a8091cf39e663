"""argparse types that range-check a flag where it is parsed.

`type=number_in(float, 0, 1, high_open=True)` refuses NaN, infinities and values
outside [0, 1) with argparse's one-line message and exit status 2, before any data
is read or any file written.
"""
import argparse
import math


def _interval(low, high, low_open, high_open):
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"{'<' if high_open else '<='} {high}"
    return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def number_in(kind, low=None, high=None, low_open=False, high_open=False):
    """An argparse `type` that parses `kind` (int or float) and accepts only finite values in the range."""
    what = "an integer" if kind is int else "a finite number"
    wanted = f"{what} {_interval(low, high, low_open, high_open)}"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value
    parse.__name__ = kind.__name__          # argparse names the type in some messages
    return parse


NON_NEGATIVE_INT = number_in(int, 0)
POSITIVE_INT = number_in(int, 1)
POSITIVE_FLOAT = number_in(float, 0, low_open=True)
NON_NEGATIVE_FLOAT = number_in(float, 0)
MOMENTUM = number_in(float, 0, 1, high_open=True)
FRACTION = number_in(float, 0, 1)
SEED = number_in(int, 0, 2**32 - 1)       # what numpy's seeding takes; torch and random take it too


def int_list(text):
    """'150,180,210' -> [150, 180, 210]; '' -> []."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs like 2,50,100, got {text!r}")
