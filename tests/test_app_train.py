"""The app's Train tab and model picker (issue 47): the trainer runs a child process and reads
its progress; one training at a time; Cancel stops the child; training only on loopback unless
--allow-training; a finished training, or the picker, switches every tab's model."""

import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from PIL import Image

from helpers import REPO, load_app, write_image_folder
from test_app_browser import CHROMIUM, browser_page, running_app

pytestmark = [pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

app = load_app()
from ui import trainer as trainer_lib  # noqa: E402 (after the app: Gradio's environment)

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# Stands in for `python -m alexnet_tf.train`: prints what it prints, writes config.json and
# history.csv per epoch, exports, and (FAKE_SLEEP) lingers between epochs; FAKE_ERROR fails as
# the command fails (one line on stderr, exit code 2); FAKE_DEAF ignores Ctrl+C.
FAKE_TRAIN = textwrap.dedent('''
    import argparse, json, os, pathlib, signal, sys, time
    p = argparse.ArgumentParser()
    for flag in ("--data", "--variant", "--time-budget", "--verbose", "--workdir",
                 "--export-dir"):
        p.add_argument(flag)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args()
    if os.environ.get("FAKE_DEAF"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("Scanning " + a.data, flush=True)
    if os.environ.get("FAKE_ERROR"):
        print("W0000 noise from TensorFlow", file=sys.stderr)
        print("error: " + os.environ["FAKE_ERROR"], file=sys.stderr)
        sys.exit(2)
    work = pathlib.Path(a.workdir); work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps({"batch_size": 50}))
    rows = ["epoch,accuracy,minutes,val_accuracy"]
    for epoch in range(3):
        print(f"Epoch {epoch + 1}/3", flush=True)
        try:
            time.sleep(float(os.environ.get("FAKE_SLEEP", "0.1")))
        except KeyboardInterrupt:  # as the command: it stops cleanly, resumable
            (work / "interrupted").write_text("")
            sys.exit(130)
        if epoch == 0:
            print("0.1 min per epoch; 3 of 3 epochs fit the 1-minute budget: epoch 3 should "
                  "end at about 12:00 (in 0 min)", flush=True)
        print("4/4 - 1s - 250ms/step - accuracy: 0.5 - val_accuracy: 0.5", flush=True)
        rows.append(f"{epoch},0.5,{0.1 * (epoch + 1)},{0.3 + 0.2 * epoch}")
        (work / "history.csv").write_text("\\n".join(rows) + "\\n")
    version = pathlib.Path(a.export_dir) / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "saved_model.pb").write_bytes(b"")
    print("Exported model: " + str(version), flush=True)
''')


@pytest.fixture
def fake_trainer(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    exported = []

    def make(**env):
        return trainer_lib.Trainer(tmp_path, tmp_path / "saved_models", on_export=exported.append,
                                   command=[sys.executable, str(script)], env=env)

    make.exported = exported
    return make


def wait_for(predicate, timeout=30, every=0.1):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(every)


def gone(pid):
    """Whether the training `pid` is gone: its process group (the guard and the command the
    guard runs) has no process left."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_training_reports_its_progress_and_hands_over_its_export(fake_trainer, tmp_path):
    trainer = fake_trainer(FAKE_SLEEP="0.3")
    settings = trainer_lib.Settings(data=str(tmp_path / "pictures"), variant="cifar", minutes=1)
    trainer.start(settings)
    wait_for(lambda: trainer.status().epochs_done >= 1)
    running = trainer.status()
    assert running.state == "running" and running.epoch >= 1
    assert running.epochs_planned == 3 and running.images_per_second == pytest.approx(200)
    assert running.minutes_left is not None and running.minutes_left <= 1
    wait_for(lambda: trainer.status().state == "finished")
    done = trainer.status()
    assert done.curve == [pytest.approx((0.1, 0.3)), pytest.approx((0.2, 0.5)),
                          pytest.approx((0.3, 0.7))]
    name = settings.run_name()
    assert fake_trainer.exported == [str(tmp_path / "saved_models" / name / "1")]
    assert done.export == fake_trainer.exported[0] and "the app now uses" in done.message
    assert (tmp_path / "runs" / name / "history.csv").is_file()


def test_run_names_follow_the_settings():
    a = trainer_lib.Settings("/data/a/pictures", "cifar", 5).run_name()
    b = trainer_lib.Settings("/data/b/pictures", "cifar", 5).run_name()
    assert a == trainer_lib.Settings("/data/a/pictures/", "cifar", 5).run_name()
    assert a != b and a.startswith("app_pictures_") and a.endswith("_cifar_5min")
    assert trainer_lib.Settings().run_name() == "app_cifar10_cifar_15min"


def test_a_second_start_is_refused_and_cancel_stops_the_child(fake_trainer, tmp_path):
    trainer = fake_trainer(FAKE_SLEEP="30")
    first = trainer.start(trainer_lib.Settings(data=str(tmp_path), minutes=5))
    with pytest.raises(trainer_lib.TrainingRefused, match="already running"):
        trainer.start(trainer_lib.Settings(data=str(tmp_path), minutes=15))
    # The tab says so on the page too, and keeps showing the running training.
    tab = object.__new__(app.train_tab.TrainTab)
    tab.trainer = trainer
    with pytest.warns(UserWarning, match="already running"):  # gr.Warning outside a page
        answer = tab.on_start(app.train_tab.FOLDER_CHOICE, str(tmp_path), "cifar", "15", -1)
    assert answer[0].startswith("**Not started**: A training is already running")
    assert answer[-1] == "5"  # the form shows the running training's budget
    wait_for(lambda: "Epoch 1/3" in trainer.status().log)
    assert trainer.cancel()
    wait_for(lambda: trainer.status().state == "cancelled")
    assert gone(first.pid) and "resume" in trainer.status().message
    assert fake_trainer.exported == []
    trainer.start(trainer_lib.Settings(data=str(tmp_path), minutes=5))  # free again
    trainer.shutdown()
    assert gone(trainer.status().pid)


def test_a_child_deaf_to_ctrl_c_is_terminated(fake_trainer, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_lib, "STOP_GRACE_SECONDS", 1)
    trainer = fake_trainer(FAKE_SLEEP="30", FAKE_DEAF="1")
    pid = trainer.start(trainer_lib.Settings(data=str(tmp_path))).pid
    wait_for(lambda: "Epoch 1/3" in trainer.status().log)
    trainer.cancel()
    wait_for(lambda: trainer.status().state == "cancelled", timeout=10)
    assert gone(pid)


def test_a_training_does_not_outlive_an_app_killed_outright(tmp_path):
    (tmp_path / "fake_train.py").write_text(FAKE_TRAIN)
    app_process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(REPO)!r}]
        from ui import trainer
        t = trainer.Trainer({str(tmp_path)!r}, {str(tmp_path / "models")!r},
                            command=[sys.executable, {str(tmp_path / "fake_train.py")!r}],
                            env={{"FAKE_SLEEP": "60"}})
        print(t.start(trainer.Settings(data={str(tmp_path)!r})).pid, flush=True)
        while "Epoch 1/3" not in t.status().log:
            time.sleep(0.1)
        print("training", flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    pid = int(app_process.stdout.readline())
    assert app_process.stdout.readline().strip() == "training" and not gone(pid)
    app_process.kill()  # SIGKILL: the app runs no clean-up
    app_process.wait()
    wait_for(lambda: gone(pid), timeout=15)
    assert list(tmp_path.glob("runs/*/interrupted"))  # stopped with Ctrl+C: resumable


def test_the_commands_error_line_is_the_message(fake_trainer, tmp_path):
    trainer = fake_trainer(FAKE_ERROR="no images found in /nowhere")
    trainer.start(trainer_lib.Settings(data="/nowhere"))
    wait_for(lambda: trainer.status().state == "failed")
    assert trainer.status().message == "error: no images found in /nowhere"
    with pytest.raises(trainer_lib.TrainingRefused, match="folder"):
        trainer.start(trainer_lib.Settings(data="  "))


def test_the_real_command_refuses_a_bad_folder_in_one_line(tmp_path):
    trainer = trainer_lib.Trainer(tmp_path, tmp_path / "saved_models")
    trainer.start(trainer_lib.Settings(data=str(tmp_path / "no_such_folder"), minutes=1))
    wait_for(lambda: trainer.status().state == "failed", timeout=120, every=0.5)
    message = trainer.status().message
    assert message.startswith("error: ") and "\n" not in message and "no_such_folder" in message


def _tabs(demo):
    return [block.label for block in demo.blocks.values() if isinstance(block, app.gr.Tab)]


@pytest.mark.parametrize("flags, offered", [
    ([], True),
    (["--host", "0.0.0.0"], False),
    (["--host", "0.0.0.0", "--allow-training"], True),
    (["--share"], False),
])
def test_training_is_offered_on_loopback_or_when_allowed(tmp_path, monkeypatch, capsys, flags,
                                                         offered):
    launched = []
    monkeypatch.setattr(app, "launch", lambda demo, **kwargs: launched.append(demo))
    monkeypatch.chdir(tmp_path)
    assert app.main(["--models-dir", str(tmp_path / "none"), *flags]) == 0
    assert ("Train" in _tabs(launched[-1])) == offered
    assert ("Training is not offered" in capsys.readouterr().out) == (not offered)


# --- In Chromium --------------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason=f"{CHROMIUM} not installed (apt-get install chromium)")


def _export(base, classes):
    from alexnet_tf.export import export_model
    from alexnet_tf.model import build_model

    export_model(build_model("cifar", num_classes=len(classes), image_size=32), base,
                 class_names=classes)
    return base


def _classify(page, image, classes, timeout=30_000):
    """Uploads `image` in the Classify tab; returns the classes the Top 5 label shows."""
    page.get_by_role("tab", name="Classify").click()
    page.locator("input[type=file]").first.set_input_files(str(image))
    # The heading (the top class) and every confidence row, read in the same instant they are
    # all there: the label re-renders in steps, and a second read can catch it half drawn.
    found = page.wait_for_function(
        "([classes, wanted]) => { const shown = (document.querySelector('#top5')?.innerText"
        " || '').split('\\n').map(line => line.trim()).filter(line => classes.includes(line));"
        " return shown.length >= wanted && shown; }",
        arg=[list(classes), min(5, len(classes)) + 1], timeout=timeout)
    return found.json_value()


def _start_training(page, folder, budget="1"):
    page.get_by_role("tab", name="Train").click()
    page.get_by_label(app.train_tab.FOLDER_CHOICE).check()
    page.locator("#train-folder textarea, #train-folder input").first.fill(str(folder))
    page.get_by_role("radio", name=budget, exact=True).check()
    page.locator("#train-start").click()


def _status(page):
    return page.locator("#train-status").inner_text()


@pytest.mark.slow
@needs_chromium
def test_train_in_the_app_then_classify_with_the_new_model(tmp_path):
    folder = write_image_folder(tmp_path / "pictures", per_class=12)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 40), (130, 140, 90)).save(photo)
    env = {app.TRAIN_ARGS_ENV: "--image-size 16 --epochs 1 --batch-size 8"}
    with running_app(tmp_path / "app.log", "--models-dir", str(tmp_path / "saved_models"),
                     cwd=tmp_path, env=env) as url, browser_page() as page:
        page.goto(url, wait_until="domcontentloaded")
        page.locator("#no-model").wait_for(timeout=30_000)  # no export yet
        _start_training(page, folder)
        page.wait_for_function("() => /[1-9]\\d* epoch\\(s\\) done/.test(document.querySelector("
                               "'#train-status')?.innerText || '')", timeout=90_000)
        page.get_by_text("the app now uses the new model").wait_for(timeout=90_000)
        shown = _classify(page, photo, ["cat", "dog", "ship"])
        assert sorted(shown[1:]) == ["cat", "dog", "ship"]  # headline + the 3 classes
        assert "Finished" in _status(page)
        page.reload(wait_until="domcontentloaded")  # the finished run is the server's
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("the app now uses the new model").wait_for(timeout=20_000)
    assert "Traceback" not in (tmp_path / "app.log").read_text()


@pytest.mark.slow
@needs_chromium
def test_cancel_stops_the_training_and_the_app_stays_usable(tmp_path):
    folder = write_image_folder(tmp_path / "pictures", per_class=12)
    model = _export(tmp_path / "saved_models" / "cifar_untrained", CIFAR10)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 40), (30, 140, 190)).save(photo)
    env = {app.TRAIN_ARGS_ENV: "--image-size 16 --epochs 500 --batch-size 8"}
    with running_app(tmp_path / "app.log", "--model", str(model), "--models-dir",
                     str(tmp_path / "saved_models"), cwd=tmp_path, env=env) as url, \
            browser_page() as page:
        page.goto(url, wait_until="domcontentloaded")
        _start_training(page, folder, budget="5")
        page.wait_for_function("() => /epoch \\d+/.test(document.querySelector("
                               "'#train-status')?.innerText || '')", timeout=90_000)
        pid = int(re.search(r"process (\d+)", _status(page))[1])
        assert not gone(pid)
        page.locator("#train-cancel").click()
        page.get_by_text("Start the same settings again to resume").wait_for(timeout=60_000)
        assert gone(pid) and "Cancelled" in _status(page)
        assert page.locator("#train-start").is_enabled()
        assert len(_classify(page, photo, CIFAR10)) == 6  # still the first model, answering


def test_the_picker_names_exports_without_their_server_paths(tmp_path):
    for name, version in (("cifar", 1), ("cifar", 2), ("fruit", 1)):
        (tmp_path / name / str(version)).mkdir(parents=True)
        (tmp_path / name / str(version) / "saved_model.pb").write_bytes(b"")
    (tmp_path / "elsewhere" / "cifar" / "1").mkdir(parents=True)
    (tmp_path / "elsewhere" / "cifar" / "1" / "saved_model.pb").write_bytes(b"")
    holder = app.ModelHolder(roots=[tmp_path, tmp_path / "elsewhere"])
    exports = holder.exports()
    again = {key for key in exports if key.startswith("cifar/1 (")}
    assert set(exports) - again == {"cifar/1", "cifar/2", "fruit/1"} and len(again) == 1
    assert {exports[k].path for k in ("cifar/1", *again)} == {
        tmp_path / "cifar" / "1", tmp_path / "elsewhere" / "cifar" / "1"}  # each can be picked
    assert holder.exports() == exports  # the same keys on every call
    assert not any(str(tmp_path) in key + e.label for key, e in exports.items())


@pytest.mark.slow
@needs_chromium
def test_the_picker_switches_between_exports(tmp_path):
    fruit = ["apple", "banana", "cherry"]
    models = tmp_path / "saved_models"
    _export(models / "cifar_untrained", CIFAR10)
    _export(models / "fruit_untrained", fruit)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 40), (200, 40, 40)).save(photo)
    with running_app(tmp_path / "app.log", "--model", str(models / "cifar_untrained"),
                     "--models-dir", str(models), cwd=tmp_path) as url, browser_page() as page:
        page.goto(url, wait_until="domcontentloaded")
        assert len(_classify(page, photo, CIFAR10)) == 6
        page.get_by_label("Model").click()
        page.get_by_role("option", name=re.compile("fruit_untrained v1")).click()
        page.get_by_text("fruit_untrained, version 1").wait_for(timeout=30_000)  # the card
        shown = _classify(page, tmp_path / "photo.png", fruit)
        assert sorted(shown[1:]) == fruit
