"""The run directory: whether a command may continue the run in it, and what that run has
done so far (its history.csv)."""

import csv
import json
import shutil

from alexnet_tf import config


class RunError(Exception):
    """A problem with the run's setup, reported as one line."""


def prepare(cfg, workdir):
    """Resume only the same run; --overwrite starts fresh. Call `record` once training starts."""
    saved = workdir / "config.json"
    if cfg.overwrite and workdir.exists():
        shutil.rmtree(workdir)
    elif saved.is_file():
        changed = config.differences(json.loads(saved.read_text()), cfg)
        if changed:
            raise RunError(f"{workdir} holds a run with a different config ({', '.join(changed)}"
                           "): use another --workdir, or --overwrite to start fresh")
        if (workdir / "metrics.json").is_file():
            raise RunError(f"{workdir} holds a finished run: use --overwrite to train again")
        print(f"Resuming the run in {workdir}")
    workdir.mkdir(parents=True, exist_ok=True)


def record(cfg, workdir):
    """Saves the config that makes the workdir this run's. Written only when training starts,
    so a command that failed before (no data, a bad flag) doesn't block the corrected one."""
    (workdir / "config.json").write_text(cfg.to_json())


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
