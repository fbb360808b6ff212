"""The run directory: whether a command may continue (or --overwrite) the run in it, the lock
that keeps one training per workdir and export dir, and what that run has done so far."""

import contextlib
import csv
import fcntl
import io
import json
import os
import pathlib
import shutil
import typing

from alexnet_tf import config, sources


class RunError(Exception):
    """A problem with the run's setup, reported as one line."""


# Names only this project's runs have: --overwrite deletes no folder without them.
RUN_KEYS = {"data", "variant", "workdir", "epochs", "lr"}  # in every config.json
BACKUP_FILES = ("latest.weights.h5", "training_metadata.json")  # Keras' BackupAndRestore
LOCK_NAME = ".train.lock"  # in the workdir; an export dir's is beside it (see export_lock)
EXPORT_RECORD = "export.json"  # the version this run exported, written before metrics.json
# What a training writes in its workdir: all that --overwrite deletes, so a user's own files in
# a folder that a run was started in survive it.
RUN_OUTPUTS = ("config.json", "metrics.json", "history.csv", "labels.txt", "bad_files.txt",
               "best.keras", ".best.partial.keras", "backup", "tensorboard", EXPORT_RECORD,
               "training_curves.png", "confusion_matrix.png", "config.json.partial",
               "metrics.json.partial", EXPORT_RECORD + ".partial")


class Locks(contextlib.ExitStack):
    """The folders a training holds. An advisory lock (flock) on a file in each: the OS
    releases it when the process ends, however it ends, so a killed run leaves no stale lock
    in the way of its resume. Closing the stack releases them too (in-process callers)."""

    def __init__(self):
        super().__init__()
        self.held = set()

    def hold(self, path, flag, folder):
        """Takes the lock file `path` of `folder` (named by `flag`), or refuses in one line if
        another process holds it."""
        path = pathlib.Path(path).resolve()
        if path in self.held:
            return
        try:
            file = self.enter_context(open(path, "a+"))
        except OSError as error:
            raise RunError(f"cannot write in {flag} {folder}: {error.strerror}") from None
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip()
            advice = ("wait for it to end, or stop it and run this command again to resume"
                      if flag == "--workdir" else "wait for it to end, or use another " + flag)
            raise RunError(f"another training{f' (process {holder})' if holder.isdigit() else ''}"
                           f" holds {flag} {folder}: {advice}") from None
        file.truncate(0)  # a note for the message above; the lock is what counts
        file.write(str(os.getpid()))
        file.flush()
        self.held.add(path)


def export_lock(export_dir):
    """The export dir's lock file: beside it, so that the model base directory TF Serving
    watches holds only its versions, and a training holds it before its first export."""
    export_dir = pathlib.Path(export_dir).resolve()
    return export_dir.parent / f".{export_dir.name}{LOCK_NAME}"


def check(cfg, workdir, locks=None, export_dir=None):
    """Resume only the same run; --overwrite only a run of this project. Nothing is deleted
    yet: `start` does that once every other check has passed. With `locks`, an existing
    workdir (and export dir) is locked first, so a second training on them is refused now."""
    saved = workdir / "config.json"
    if workdir.exists() and not workdir.is_dir():
        raise RunError(f"--workdir {workdir} is a file, not a folder")
    if cfg.overwrite and workdir.is_dir():
        _check_overwrite(cfg, workdir, export_dir)
    if locks is not None:
        if workdir.is_dir():
            locks.hold(workdir / LOCK_NAME, "--workdir", workdir)
        if export_dir is not None and export_lock(export_dir).parent.is_dir():
            locks.hold(export_lock(export_dir), "--export-dir", export_dir)
    if cfg.overwrite:
        return
    if saved.is_file():
        try:
            old = json.loads(saved.read_text())
        except ValueError as error:
            old = error
        if not isinstance(old, dict):  # edited by hand, or cut off mid-write
            raise RunError(f"{saved} is unreadable ({old}): delete it to resume the run, or "
                           "use --overwrite to start afresh")
        changed = config.differences(old, cfg)
        if changed:  # with the saved values, so resuming it takes no digging
            was = ", ".join((f"{name} {old[name]!r}" if name in old else f"no {name}")
                            + f", now {getattr(cfg, name)!r}" for name in changed)
            raise RunError(f"{workdir} holds a run with a different config ({was}): pass the "
                           "saved values to resume it, use another --workdir, or --overwrite to "
                           "start fresh")
        if (workdir / "metrics.json").is_file():
            raise RunError(f"{workdir} holds a finished run: use --overwrite to train again")
        print(f"Resuming the run in {workdir}")


def _check_overwrite(cfg, workdir, export_dir):
    """--overwrite empties a folder only when it holds a run of this project (or nothing),
    and never one that holds the training data or the exported models."""
    inside = workdir.resolve()
    for flag, path in (("--data", cfg.data if sources.is_folder(cfg.data) else None),
                       ("--export-dir", export_dir)):
        if path is not None and inside in (pathlib.Path(path).resolve(),
                                           *pathlib.Path(path).resolve().parents):
            raise RunError(f"--overwrite would delete {flag} {path}, which is inside --workdir "
                           f"{workdir}: use another --workdir")
    if not holds_a_run(workdir):
        raise RunError(f"--workdir {workdir} holds no run of this project (no config.json or "
                       "backup/ of one), and --overwrite deletes only a run: use another "
                       "--workdir, or empty it yourself")


def holds_a_run(workdir):
    """True when `workdir` is empty or holds what a training of this project writes: its
    config.json, or a Keras backup. Anything else may be the user's, and is never deleted."""
    contents = [p.name for p in workdir.iterdir()]
    if not set(contents) - {LOCK_NAME}:
        return True
    if any((workdir / "backup" / name).is_file() for name in BACKUP_FILES):
        return True
    try:
        saved = json.loads((workdir / "config.json").read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):  # cut off mid-write or edited: labels.txt tells
        return (workdir / "labels.txt").is_file() or (workdir / "history.csv").is_file()
    return isinstance(saved, dict) and RUN_KEYS <= set(saved)


def start(cfg, workdir, locks=None, export_dir=None):
    """Makes the workdir, the run's outputs deleted first with --overwrite. Called after the
    checks (flags, data) so that a command refused with a one-line error never costs the run
    it would replace. With `locks`, takes the locks `check` could not (the folders did not
    exist yet) and checks again under them. Call `record` once training starts."""
    wanted = [(workdir, workdir / LOCK_NAME, "--workdir", workdir)]
    if locks is not None and export_dir is not None:
        lock = export_lock(export_dir)
        wanted.append((lock.parent, lock, "--export-dir", export_dir))
    newly_locked = False
    for folder, lock, flag, name in wanted:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunError(f"cannot create {flag} {name}: {error.strerror}") from None
        if locks is not None and lock.resolve() not in locks.held:
            locks.hold(lock, flag, name)
            newly_locked = True
    if newly_locked:  # another training may have started, or finished, here since `check`
        check(cfg, workdir, export_dir=export_dir)
    if cfg.overwrite:  # the run's own outputs only; the held lock file stays
        for path in (workdir / name for name in RUN_OUTPUTS):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    drop_cut_row(workdir / "history.csv")


def drop_cut_row(history):
    """Cuts a row a kill left unfinished off the end of `history` (Keras' CSVLogger file), so
    that a resumed run's first row starts on a line of its own."""
    if not history.is_file():
        return
    text = history.read_bytes()
    if text and not text.endswith(b"\n"):
        with open(history, "r+b") as f:
            f.truncate(text.rfind(b"\n") + 1)


def record(cfg, workdir):
    """Saves the config that makes the workdir this run's. Written only when training starts,
    so a command that failed before (no data, a bad flag) doesn't block the corrected one."""
    write_atomically(workdir / "config.json", cfg.to_json())


def write_atomically(path, text):
    """Whole or not at all: a kill mid-write must not leave a truncated file that blocks resuming."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w") as f:
        f.write(text)
    replace_durably(partial, path)


def replace_durably(partial, path):
    """Renames the finished file `partial` to `path`, durably: its data reaches the disk
    before the rename, and the rename before this returns. Without the first fsync a power cut
    can leave an empty file under the final name (the rename reaches the disk before the data
    with delayed allocation); without the second the old file can come back (fsync(2))."""
    with open(partial, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(partial, path)
    folder = os.open(pathlib.Path(path).parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def exported_version(workdir, export_dir):
    """The version this run exported before it was stopped short of metrics.json, when it
    is still in `export_dir`: resuming reuses it instead of exporting an identical one (TF
    Serving would load that for nothing)."""
    try:
        version = pathlib.Path(json.loads((workdir / EXPORT_RECORD).read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (version.parent.resolve() != pathlib.Path(export_dir).resolve()
            or not (version / "saved_model.pb").is_file()):
        return None
    return version


def record_export(workdir, version):
    write_atomically(workdir / EXPORT_RECORD, json.dumps({"version": str(version)}))


def finish(workdir, metrics):
    """Marks the run finished: metrics.json, written last so that a crash before it resumes,
    then the backup goes."""
    write_atomically(workdir / "metrics.json", json.dumps(metrics, indent=2))
    shutil.rmtree(workdir / "backup", ignore_errors=True)


class Progress(typing.NamedTuple):
    epochs: int  # epochs logged in history.csv
    minutes: float  # training minutes so far (the TrainingClock's count)
    best_val_accuracy: float | None  # so a resumed ModelCheckpoint keeps a better best.keras


def progress(workdir):
    """What the run in `workdir` has done so far, from one read of its history.csv.

    The file is read while the run appends to it, and a kill may cut a row off: only whole
    rows count (see whole_rows), and a value that is not a number is skipped."""
    rows = whole_rows(workdir / "history.csv")
    return Progress(epochs=len(_numbers(rows, "epoch")),
                    minutes=max(_numbers(rows, "minutes"), default=0.0),
                    best_val_accuracy=max(_numbers(rows, "val_accuracy"), default=None))


def whole_rows(history):
    """The rows of `history` (a CSVLogger file) that have all their fields and no more: not the
    last line while it is being written, nor a cut-off row a resumed run's first row was
    appended to before `drop_cut_row` existed."""
    text = history.read_text(errors="replace") if history.is_file() else ""
    return [row for row in csv.DictReader(io.StringIO(text[:text.rfind("\n") + 1]))
            if None not in row and None not in row.values()]


def _numbers(rows, column):
    """The set of `column`'s values that read as numbers."""
    numbers = set()
    for row in rows:
        with contextlib.suppress(TypeError, ValueError):
            numbers.add(float(row.get(column)))
    return numbers
