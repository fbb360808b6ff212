"""An error as the one line a user reads: `error: ...` on stderr and exit code 2 for a command,
a message for the app (the project's rule: never a traceback for bad input)."""

import sys
import textwrap

REFUSED = 2  # a command's exit code for bad input, argparse's own


def one_line(error, limit=None):
    """The first non-blank line of `error` (an exception or a message: TensorFlow's and Keras'
    run over many lines), or the exception's type name when it says nothing.

    With `limit`, cut at a word to at most that many characters (a cut mid-word can turn
    port=443 into port=4), or hard-cut when one long word (a URL) would leave little."""
    text = str(error)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first and isinstance(error, BaseException):
        first = type(error).__name__
    if limit is None or len(first) <= limit:
        return first
    cut = textwrap.shorten(first, limit, placeholder=" ...")
    return cut if len(cut) >= min(40, limit) else first[:limit - 3] + "..."


def report(error):
    """Prints `error: <one line>` on stderr; returns the exit code for it (REFUSED)."""
    print(f"error: {one_line(error)}", file=sys.stderr)
    return REFUSED
