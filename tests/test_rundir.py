import json
import os
import pathlib

from alexnet_tf import config, rundir


def test_atomic_writes_reach_the_disk_before_and_after_the_rename(tmp_path, monkeypatch):
    import stat

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(("fsync", kind))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", pathlib.Path(src).read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    rundir.write_atomically(tmp_path / "metrics.json", '{"top1": 0.9}')
    assert events == [("fsync", "file"), ("replace", '{"top1": 0.9}'), ("fsync", "folder")]
    assert (tmp_path / "metrics.json").read_text() == '{"top1": 0.9}'
    assert list(tmp_path.iterdir()) == [tmp_path / "metrics.json"]


def test_only_a_folder_with_a_run_of_this_project_may_be_overwritten(tmp_path):
    assert rundir.holds_a_run(tmp_path)  # empty
    (tmp_path / "notes.txt").write_text("mine")
    assert not rundir.holds_a_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"data": "x"}))
    assert not rundir.holds_a_run(tmp_path)  # not this project's config
    rundir.record(config.parse([]), tmp_path)
    assert rundir.holds_a_run(tmp_path)


def test_progress_reads_epochs_minutes_and_the_best_validation_accuracy(tmp_path):
    assert rundir.progress(tmp_path) == rundir.Progress(0, 0.0, None)
    (tmp_path / "history.csv").write_text("epoch,minutes,val_accuracy\n0,1.5,0.4\n1,3.0,0.6\n"
                                          "1,3.5,0.5\n")  # epoch 1 again after a resume
    assert rundir.progress(tmp_path) == rundir.Progress(2, 3.5, 0.6)
    history = tmp_path / "history.csv"
    with open(history, "a") as f:
        f.write("2,4.0,0.7e-\n3,5")  # a value garbled, a row being written (or cut by a kill)
    assert rundir.progress(tmp_path) == rundir.Progress(3, 4.0, 0.6)
    with open(history, "a") as f:  # a resumed run's row appended to the cut one
        f.write("3,5.0,0.9\n")
    assert rundir.progress(tmp_path) == rundir.Progress(3, 4.0, 0.6)
    history.write_text(history.read_text() + "4,6")
    rundir.start(config.parse([]), tmp_path)  # a resumed run cuts it off before appending
    assert history.read_text().endswith("\n3,53,5.0,0.9\n")


def test_finish_writes_the_metrics_and_drops_the_backup(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "latest.weights.h5").write_text("")
    rundir.finish(tmp_path, {"top1": 0.5})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"top1": 0.5}
    assert not (tmp_path / "backup").exists()


def test_a_run_with_another_config_names_what_differs(tmp_path):
    rundir.record(config.parse(["--lr", "0.05"]), tmp_path)
    rundir.check(config.parse(["--lr", "0.05"]), tmp_path)  # the same run: resumes
    try:
        rundir.check(config.parse(["--lr", "0.5"]), tmp_path)
    except rundir.RunError as error:
        assert "lr 0.05, now 0.5" in str(error)
    else:
        raise AssertionError("a different config was not refused")
