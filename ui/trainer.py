"""The Train tab's engine: runs `python -m alexnet_tf.train` as a child process, one at a time,
and reads its progress from its output and its run directory's history.csv. No Gradio here.

Each choice of settings has its own run directory (runs/<name>) and export directory
(saved_models/<name>), named from the settings, so starting the same settings after a cancel
resumes that run (the training command resumes a run from its workdir by itself).
"""

import collections
import csv
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

from alexnet_tf.errors import one_line
from alexnet_tf.rundir import whole_rows

REPO = pathlib.Path(__file__).resolve().parent.parent
CIFAR10 = "cifar10"
BUDGETS = (1, 5, 15, 60)  # minutes offered (the command's --time-budget); 1 is a quick try
# A child that ignores Ctrl+C this long gets SIGTERM, and as long again SIGKILL.
STOP_GRACE_SECONDS = 20
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # Keras colours its progress even into a pipe
EPOCH_START = re.compile(r"^Epoch (\d+)/(\d+)")
EPOCH_END = re.compile(r"^\d+/\d+ - \S+ - ([\d.]+)(us|ms|s)/step\b")  # Keras' --verbose 2 line
PACE = re.compile(r"min per epoch; (\d+) of \d+ epochs fit")
EXPORTED = re.compile(r"^Exported model: (.+)$")
UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


class TrainingRefused(Exception):
    """Start asked for while a training runs, or with unusable settings (one line)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    data: str = CIFAR10  # "cifar10" (tensorflow-datasets) or a folder of class subfolders
    variant: str = "cifar"
    minutes: float = 15

    def run_name(self):
        """app_<data>_<variant>_<minutes>min; a folder is named by its name plus a hash of its
        full path, so two folders named alike get runs of their own."""
        if self.data == CIFAR10:
            source = CIFAR10
        else:
            path = pathlib.Path(self.data).expanduser().resolve()
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name)[:40] or "folder"
            source = f"{safe}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        return f"app_{source}_{self.variant}_{self.minutes:g}min"


@dataclasses.dataclass
class Status:
    """A snapshot of the training for the page: what runs, how far, and how it ended."""
    state: str = "idle"  # idle, running, cancelling, finished, cancelled, failed
    settings: Settings | None = None
    run_name: str = ""
    pid: int | None = None
    phase: str = ""  # the command's latest line before the first epoch
    epoch: int = 0  # the epoch being trained (1-based), 0 before the first
    epochs_done: int = 0
    epochs_planned: int | None = None  # what the time budget holds, once the command says
    images_per_second: float | None = None
    minutes: float = 0.0  # training minutes so far (history.csv), resumed sessions included
    minutes_left: float | None = None
    val_accuracy: float | None = None
    curve: list = dataclasses.field(default_factory=list)  # (minutes, val_accuracy) per epoch
    message: str = ""  # how it ended: the export loaded, or the command's `error: ...` line
    export: str | None = None
    log: str = ""  # the command's last lines

    @property
    def busy(self):
        return self.state in ("running", "cancelling")


class _Run:
    """One child process and what its output has said so far."""

    def __init__(self, settings, process, workdir, export_dir, started, fresh):
        self.settings, self.process = settings, process
        self.workdir, self.export_dir = workdir, export_dir
        self.started, self.fresh = started, fresh
        self.state, self.message, self.export = "running", "", None
        self.phase, self.epoch, self.epochs_planned = "Starting", 0, None
        self.step_seconds, self.error, self.cancelled = None, None, False
        self.lines = collections.deque(maxlen=40)
        self.stderr_tail = collections.deque(maxlen=5)

    def read_stdout(self, line):
        line = ANSI.sub("", line).strip()
        if not line:
            return
        self.lines.append(line)
        if match := EPOCH_START.match(line):
            self.epoch = int(match[1])
        elif match := EPOCH_END.match(line):
            self.step_seconds = float(match[1]) * UNIT_SECONDS[match[2]]
        elif match := PACE.search(line):
            self.epochs_planned = int(match[1])
        elif match := EXPORTED.match(line):
            self.export = match[1].strip()
        elif not self.epoch and "/step" not in line:
            self.phase = line[:160]

    def read_stderr(self, line):
        line = ANSI.sub("", line).strip()
        if line.startswith("error: "):  # the command's one-line message (exit code 2)
            self.error = line
        elif line:
            self.stderr_tail.append(line)


class Trainer:
    """Starts, watches and cancels the one training of the app.

    root: where runs/ goes (the app's working directory, as for the command line);
    models_dir: the export base directories' parent (saved_models/);
    on_export(path): called with the new export once a training succeeds (the app loads it);
    command: the training command before its flags; extra_args: flags added after the app's
    (tests pass a tiny run's); env: extra environment for the child.
    """

    def __init__(self, root, models_dir, on_export=None, command=None, extra_args=(), env=None):
        self.root, self.models_dir = pathlib.Path(root), pathlib.Path(models_dir)
        self.on_export = on_export
        self.command = list(command or [sys.executable, "-m", "alexnet_tf.train"])
        self.extra_args, self.env = list(extra_args), dict(env or {})
        self._lock = threading.Lock()
        self._run = None

    def start(self, settings):
        """Starts the training of `settings`; raises TrainingRefused while one runs."""
        with self._lock:
            if self._run is not None and self._run.state in ("running", "cancelling"):
                raise TrainingRefused(
                    f"A training is already running ({self._run.settings.run_name()}): wait "
                    "for it to end, or cancel it first.")
            if settings.data != CIFAR10 and not settings.data.strip():
                raise TrainingRefused("Give the folder of class subfolders to train on.")
            workdir = (self.root / "runs" / settings.run_name()).resolve()
            export_dir = (self.models_dir / settings.run_name()).resolve()
            # A finished run is trained again from the start (a new export version); any other
            # is resumed by the command itself.
            fresh = (workdir / "metrics.json").is_file()
            args = ["--data", settings.data, "--variant", settings.variant,
                    "--time-budget", f"{settings.minutes:g}", "--verbose", "2",
                    "--workdir", str(workdir), "--export-dir", str(export_dir),
                    *(["--overwrite"] if fresh else []), *self.extra_args]
            process = subprocess.Popen(
                # A guard stops the command should the app die without cleaning up.
                [sys.executable, "-m", "ui.orphan_guard", str(os.getpid()), *self.command,
                 *args], cwd=self.root, env=self._child_env(),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, errors="replace", bufsize=1,
                start_new_session=True)  # its own process group: Cancel signals all of it
            self._run = _Run(settings, process, workdir, export_dir, time.time(), fresh)
            threading.Thread(target=self._watch, args=(self._run,), daemon=True).start()
        return self.status()

    def _child_env(self):
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1",
                "TF_CPP_MIN_LOG_LEVEL": "2", **self.env}

    def cancel(self):
        """Asks the running training to stop (Ctrl+C to its process group: it ends like a
        killed run, resumable); escalates to SIGTERM and SIGKILL if it lingers. Returns False
        when nothing runs."""
        with self._lock:
            run = self._run
            if run is None or run.state != "running":
                return False
            run.state, run.cancelled = "cancelling", True
        threading.Thread(target=self._stop, args=(run,), daemon=True).start()
        return True

    def shutdown(self, timeout=10):
        """Stops a running training and waits for it (the app is exiting)."""
        run = self._run
        if run is not None and run.process.poll() is None:
            run.cancelled = True
            self._stop(run, timeout / 2)

    @staticmethod
    def _stop(run, grace=None):
        grace = STOP_GRACE_SECONDS if grace is None else grace
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(run.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                run.process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def _watch(self, run):
        readers = [threading.Thread(target=_pump, args=(stream, reader), daemon=True)
                   for stream, reader in ((run.process.stdout, run.read_stdout),
                                          (run.process.stderr, run.read_stderr))]
        for reader in readers:
            reader.start()
        code = run.process.wait()
        for reader in readers:
            reader.join(timeout=10)
        if code == 0 and not run.cancelled:
            self._finish(run)
        elif run.cancelled:  # each message is set before its state: pages see both
            run.message = ("Cancelled. Start the same settings again to resume from the last "
                           "finished epoch.")
            run.state = "cancelled"
        else:
            last = run.stderr_tail[-1] if run.stderr_tail else ""
            run.message = run.error or f"error: the training command stopped (exit code " \
                                       f"{code}): {last}"
            run.state = "failed"

    def _finish(self, run):
        export = run.export or _newest_version(run.export_dir)
        if export is None:
            run.message, run.state = f"error: no export found in {run.export_dir}", "failed"
            return
        run.phase = "Loading the new model"
        try:
            if self.on_export is not None:
                self.on_export(export)
        except Exception as error:  # ModelNotFound, or anything a broken export raises
            run.message, run.state = f"error: {one_line(error)}", "failed"
            return
        run.export = str(export)
        run.state = "finished"
        export = pathlib.Path(export)
        run.message = (f"Done: the app now uses the new model ({export.parent.name}, version "
                       f"{export.name}).")

    def status(self):
        """What the page shows: a Status snapshot (reads history.csv; cheap)."""
        run = self._run
        if run is None:
            return Status()
        curve = read_history(run.workdir / "history.csv",
                             not_before=run.started if run.fresh else None)
        status = Status(
            state=run.state, settings=run.settings, run_name=run.settings.run_name(),
            pid=run.process.pid, phase=run.phase, epoch=run.epoch, epochs_done=len(curve),
            epochs_planned=run.epochs_planned, message=run.message, export=run.export,
            curve=[(m, a) for m, a in curve], log="\n".join(run.lines))
        if curve:
            status.minutes, status.val_accuracy = curve[-1]
        batch = _batch_size(run.workdir)
        if run.step_seconds and batch:
            status.images_per_second = batch / run.step_seconds
        status.minutes_left = _minutes_left(status, run.settings.minutes)
        return status


def _pump(stream, reader):
    with stream:
        for line in stream:  # text mode: Keras' \r progress updates arrive as lines too
            reader(line)


def read_history(path, not_before=None):
    """[(minutes, val_accuracy)] per finished epoch of history.csv (the training clock's
    `minutes` column); [] while there is none, or (not_before) only an older run's."""
    try:
        if not_before is not None and path.stat().st_mtime < not_before:
            return []
        rows = whole_rows(path)
    except (OSError, csv.Error):
        return []
    curve = []
    for row in rows:
        try:
            curve.append((float(row["minutes"]), float(row["val_accuracy"])))
        except (KeyError, TypeError, ValueError):  # a row being written, or an odd one
            continue
    return curve


def _batch_size(workdir):
    try:
        return int(json.loads((workdir / "config.json").read_text())["batch_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _minutes_left(status, budget):
    """The budget's remainder, or sooner when the epochs it holds end sooner."""
    if not status.busy or not status.epochs_done:
        return None
    left = max(0.0, budget - status.minutes)
    if status.epochs_planned:
        pace = status.minutes / status.epochs_done
        left = min(left, max(0, status.epochs_planned - status.epochs_done) * pace)
    return left


def _newest_version(export_dir):
    versions = [p for p in pathlib.Path(export_dir).glob("*")
                if p.name.isdigit() and (p / "saved_model.pb").is_file()]
    return max(versions, key=lambda p: int(p.name), default=None)
