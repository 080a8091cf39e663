"""User-facing errors (one clear paragraph and a non-zero exit, never a traceback) and warnings (one line)."""
import sys
import textwrap

INTERRUPTED = "interrupted; the same command continues where this stopped"
INTERRUPTED_STATUS = 130            # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


def warn(message):
    """One 'warning: ...' line on stderr, as the scripts print them: something was skipped or ignored, the run goes on."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


class UserError(Exception):
    """Bad input from the user (flags, paths, data, checkpoints).

    Scripts raise it anywhere below `main`; `run_cli` prints it as one paragraph
    on stderr and exits with status 2, the same status argparse uses.
    """


def run_cli(main, parser, argv=None, interrupted=INTERRUPTED):
    """Parse `argv`, call `main(args)`, turn a `UserError` into a message and exit 2, and Ctrl-C into the one
    line `interrupted` and exit 130 (every script writes its files atomically and resumes, so the state a
    Ctrl-C leaves is one the same command continues from)."""
    try:
        args = parser.parse_args(argv)
        return main(args)
    except UserError as err:
        text = " ".join(str(err).split())
        # Lines break at spaces only, so paths and commands in the message stay whole and copyable.
        print(textwrap.fill(f"error: {text}", width=100, break_long_words=False, break_on_hyphens=False),
              file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr, flush=True)
        sys.exit(INTERRUPTED_STATUS)
