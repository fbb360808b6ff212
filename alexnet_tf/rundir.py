"""The run directory: whether a command may continue the run in it, and what that run has
done so far (its history.csv)."""

import csv
import json
import shutil

from alexnet_tf import config


class RunError(Exception):
    """A problem with the run's setup, reported as one line."""


def prepare(cfg, workdir):
    """Resume only the same run; --overwrite starts fresh."""
    saved = workdir / "config.json"
    if cfg.overwrite and workdir.exists():
        shutil.rmtree(workdir)
    elif saved.is_file():
        # A run that failed before finishing an epoch (no data, a bad flag) has nothing to
        # resume: the corrected command starts afresh instead of being refused.
        started = epochs_trained(workdir) or (workdir / "backup").exists()
        changed = config.differences(json.loads(saved.read_text()), cfg)
        if changed and started:
            raise RunError(f"{workdir} holds a run with a different config ({', '.join(changed)}"
                           "): use another --workdir, or --overwrite to start fresh")
        if (workdir / "metrics.json").is_file():
            raise RunError(f"{workdir} holds a finished run: use --overwrite to train again")
        if started:
            print(f"Resuming the run in {workdir}")
    workdir.mkdir(parents=True, exist_ok=True)
    saved.write_text(cfg.to_json())


def history(workdir):
    path = workdir / "history.csv"
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def best_val_accuracy(workdir):
    """A resumed run's best validation accuracy, so ModelCheckpoint keeps a better best.keras."""
    scores = [float(row["val_accuracy"]) for row in history(workdir) if row.get("val_accuracy")]
    return max(scores, default=None)


def minutes_trained(workdir):
    return max((float(row["minutes"]) for row in history(workdir) if row.get("minutes")),
               default=0.0)


def epochs_trained(workdir):
    return len({row["epoch"] for row in history(workdir)})
