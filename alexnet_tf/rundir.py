"""The run directory: whether a command may continue the run in it, and what that run has
done so far (its history.csv)."""

import csv
import json
import os
import shutil
import typing

from alexnet_tf import config


class RunError(Exception):
    """A problem with the run's setup, reported as one line."""


def check(cfg, workdir):
    """Resume only the same run. With --overwrite nothing is checked, and nothing is deleted
    yet: `start` does that once every other check has passed."""
    saved = workdir / "config.json"
    if workdir.exists() and not workdir.is_dir():
        raise RunError(f"--workdir {workdir} is a file, not a folder")
    if cfg.overwrite:
        return
    if saved.is_file():
        try:
            old = json.loads(saved.read_text())
        except ValueError as error:
            old = error
        if not isinstance(old, dict):  # cut off mid-write by an older version, or edited
            raise RunError(f"{saved} is unreadable ({old}): delete it to resume the run, or "
                           "use --overwrite to start afresh")
        changed = config.differences(old, cfg)
        if changed:  # with the saved values, so resuming it takes no digging
            was = ", ".join(f"{name} {config.saved_value(old, name)!r}, now {getattr(cfg, name)!r}"
                            for name in changed)
            raise RunError(f"{workdir} holds a run with a different config ({was}): pass the "
                           "saved values to resume it, use another --workdir, or --overwrite to "
                           "start fresh")
        if (workdir / "metrics.json").is_file():
            raise RunError(f"{workdir} holds a finished run: use --overwrite to train again")
        print(f"Resuming the run in {workdir}")


def start(cfg, workdir):
    """Makes the workdir, emptied first with --overwrite. Called after the checks (flags, data)
    so that a command refused with a one-line error never costs the run it would replace.
    Call `record` once training starts."""
    if cfg.overwrite and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)


def record(cfg, workdir):
    """Saves the config that makes the workdir this run's. Written only when training starts,
    so a command that failed before (no data, a bad flag) doesn't block the corrected one."""
    write_atomically(workdir / "config.json", cfg.to_json())


def write_atomically(path, text):
    """Whole or not at all: a kill mid-write must not leave a truncated file that blocks resuming."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


class Progress(typing.NamedTuple):
    epochs: int  # epochs logged in history.csv
    minutes: float  # training minutes so far (the TrainingClock's count)
    best_val_accuracy: float | None  # so a resumed ModelCheckpoint keeps a better best.keras


def progress(workdir):
    """What the run in `workdir` has done so far, from one read of its history.csv."""
    path = workdir / "history.csv"
    rows = []
    if path.is_file():
        with open(path) as f:
            rows = list(csv.DictReader(f))
    return Progress(
        epochs=len({row["epoch"] for row in rows}),
        minutes=max((float(row["minutes"]) for row in rows if row.get("minutes")), default=0.0),
        best_val_accuracy=max((float(row["val_accuracy"]) for row in rows
                               if row.get("val_accuracy")), default=None))
