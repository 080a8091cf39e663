"""Where a pipeline's time went: the step timings that `scripts.run_steps` writes under STEP_TIMES, summed
per step over the runs, and the time after the last step (results table, figures).

    python -m scripts.step_times save/logs/quickstart/step_times --start "$(date +%s)"   # (the start, saved before)

Seconds are each step's wall time inside its run's process; with JOBS runs at once they add up to about
JOBS times the pipeline's wall time, which is why the table gives shares as well as seconds.
"""
import argparse
import collections
import glob
import os
import sys
import time


def read_timings(folder):
    """[(step, seconds, end time)] from every folder/*.tsv that scripts.run_steps wrote."""
    rows = []
    for path in sorted(glob.glob(os.path.join(folder, "*.tsv"))):
        with open(path) as handle:
            for line in handle:
                name, seconds, end = line.rstrip("\n").split("\t")
                rows.append((name, float(seconds), float(end)))
    return rows


def split_table(rows, start, end):
    """Lines of the table: per step its runs, total seconds and share of all steps; then the wall time and
    the time between the last step's end and `end` (results table and figures)."""
    totals, counts = collections.defaultdict(float), collections.Counter()
    for name, seconds, _ in rows:
        totals[name] += seconds
        counts[name] += 1
    steps = sum(totals.values()) or 1.0
    width = max([len(n) for n in totals] + [len("step")]) + 2
    lines = [f"{'step':<{width}}{'runs':>5}{'seconds':>10}{'per run':>9}{'share':>8}"]
    lines += [f"{name:<{width}}{counts[name]:>5}{totals[name]:>10.1f}{totals[name] / counts[name]:>9.1f}"
              f"{100 * totals[name] / steps:>7.1f}%" for name in sorted(totals, key=totals.get, reverse=True)]
    last = max((e for _, _, e in rows), default=start)
    lines.append(f"{'all steps (summed over runs)':<{width}}{'':>5}{steps:>10.1f}")
    lines.append(f"wall time {end - start:.0f} s: runs {last - start:.0f} s, then results table and figures "
                 f"{end - last:.0f} s")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the STEP_TIMES folder of the pipeline")
    parser.add_argument("--start", type=float, required=True, help="the pipeline's start (Unix time, seconds)")
    args = parser.parse_args(argv)
    rows = read_timings(args.folder)
    if not rows:
        print(f"no step timings in {args.folder}", file=sys.stderr)
        return 1
    print("\n".join(split_table(rows, args.start, time.time())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
