"""Runs a command, and stops it when the process that started this one dies.

    python -m ui.orphan_guard PARENT_PID COMMAND [ARG...]

The app starts its training through this guard: an app killed outright (SIGKILL, a crash) runs
no clean-up of its own, and its training would otherwise go on alone for up to the whole time
budget. The guard notices that PARENT_PID is no longer its parent (it was re-parented; given as
an argument, since the app may die before the guard could ask) and stops the command: Ctrl+C
(the run stays resumable), then SIGTERM, then SIGKILL. Signals sent to the whole process group
(Cancel's) reach the command directly; the guard waits for the command to end, and exits with
its exit code.
"""

import os
import signal
import subprocess
import sys
import time

POLL_SECONDS = 1.0
STOP_GRACE_SECONDS = 20  # as long as Cancel waits before each harder signal


def run(parent, command):
    """Runs `command` until it ends; returns its exit code (128 + N for signal N)."""
    # Handlers, not SIG_IGN: the command inherits ignored signals across exec, not handlers.
    # Ctrl+C reaches the command from its group; a second one would cut its clean-up short.
    # One that comes before the command exists (a Cancel right after Start) is passed on.
    early_interrupt = []
    signal.signal(signal.SIGINT, lambda *_: early_interrupt.append(True))
    child = subprocess.Popen(command)
    signal.signal(signal.SIGINT, lambda *_: None)
    if early_interrupt:
        child.send_signal(signal.SIGINT)
    # SIGTERM is passed on (to the guard alone, or twice), and the guard waits for the command.
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    while child.poll() is None:
        if os.getppid() != parent:
            stop(child)
            break
        time.sleep(POLL_SECONDS)
    code = child.wait()
    return 128 - code if code < 0 else code


def stop(child):
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        child.send_signal(sig)
        try:
            child.wait(timeout=STOP_GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue


if __name__ == "__main__":
    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        sys.exit("usage: python -m ui.orphan_guard PARENT_PID COMMAND [ARG...]")
    sys.exit(run(int(sys.argv[1]), sys.argv[2:]))
