"""A browser demo of AlexNet: classify an image, look inside the network, see the paper's ideas
on your image, train a model and switch between models, all without a restart.

    python ui/app.py [--model DIR] [--models-dir DIR] [--host 127.0.0.1] [--port 7860]
                     [--share] [--auth USER:PASSWORD] [--allow-training]

DIR is a SavedModel version directory or a model base directory (its newest integer version);
the default is the newest export under saved_models/. The app classifies with the exports
themselves (through `alexnet_tf.inference`), so it runs what TF Serving would run; only the
"How AlexNet works" tab rebuilds the Keras model from an export. The Train tab runs
`python -m alexnet_tf.train` in the background (runs/ and saved_models/ here).
"""

import argparse
import atexit
import os
import pathlib
import shlex
import signal
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python ui/app.py` puts ui/, not the repo, on sys.path
    sys.path.insert(0, str(REPO))

from ui import cache  # noqa: E402 (first: it sets Gradio's environment before gradio loads)
from ui.cache import (MAX_FILE_SIZE, UploadBound, as_file, trim_cache,  # noqa: E402,F401
                      trim_app_cache)

import gradio as gr  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from alexnet_tf.inference import Classifier, ModelNotFound, newest_export  # noqa: E402,F401
from ui import classify_tab, explain_tab, inside_tab, train_tab  # noqa: E402
from ui.classify_tab import EXAMPLES, classify, model_card, model_name  # noqa: E402,F401
from ui.images import load_image  # noqa: E402,F401
from ui.inside_tab import LAYERS, inside  # noqa: E402,F401
from ui.models import ModelHolder, ModelView, load_classifier  # noqa: E402
from ui.pictures import filter_grid  # noqa: E402,F401
from ui.trainer import Trainer  # noqa: E402

CONCURRENCY = 2  # model calls at once: a CPU box has few cores and each call uses all of them
QUEUE_SIZE = 64  # waiting requests beyond this are turned away instead of piling up
MODEL_POLL_SECONDS = 2.0  # how soon a page shows a model switched elsewhere
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Extra flags for the Train tab's command (split like a shell): the tests train a tiny run.
TRAIN_ARGS_ENV = "ALEXNET_APP_TRAIN_ARGS"
TRAIN_HINT = (
    "No trained model found under saved_models/. Train one in the app's Train tab, or run, "
    "for example:\n\n"
    "    python -m alexnet_tf.train --data PATH/TO/FOLDER --time-budget 15   # class subfolders\n"
    "    python -m alexnet_tf.train --time-budget 15                         # CIFAR-10\n\n"
    "(training exports to saved_models/; pick the model in the app, or pass --model).")


def build_demo(classifier=None, *, models=None, trainer=None):
    """The app's Blocks. `models`: a ModelHolder (default: one holding `classifier`, an
    inference.Classifier or None); `trainer`: a ui.trainer.Trainer, or None for no Train tab."""
    models = models if models is not None else ModelHolder(classifier)
    with gr.Blocks(title="AlexNet", delete_cache=(1800, 3600)) as demo:
        # delete_cache: Gradio keeps every upload and output; those older than an hour go.
        files = cache.OutputFiles(demo)
        gr.Markdown("# AlexNet\nClassify an image with an exported AlexNet "
                    "(Krizhevsky, Sutskever & Hinton, 2012), look inside it, or train one.")
        header = _model_picker(models)
        # The tabs. Each gives a ModelView: what it shows of the current model, redrawn on
        # every switch. A new tab is added here, with its view in `views`.
        with gr.Tab("Classify"):
            classify = classify_tab.ClassifyTab(models, files)
        with gr.Tab("Inside AlexNet"):
            inside_view = inside_tab.InsideTab(models, files, classify)
        with gr.Tab("How AlexNet works") as explain_block:
            explain_view = explain_tab.ExplainTab(models, files, classify, explain_block)
        views = [header, classify.model_view, inside_view.model_view, explain_view.model_view]
        if trainer is not None:
            with gr.Tab("Train"):
                train = train_tab.TrainTab(trainer)
            demo.load(*train.loaded, queue=False, show_progress="hidden",
                      api_visibility="private")
        _follow_model_switches(demo, models, views)
    return demo


def _model_picker(models):
    """The picker of exports and the no-model banner, as a ModelView; a choice switches the
    whole app (every page) to that model."""
    banner = gr.Markdown(model_card(None) if models.current is None else "",
                         visible=models.current is None, elem_id="no-model")
    picker = gr.Dropdown(label="Model", elem_id="model-picker", interactive=True,
                         choices=[], value=None, allow_custom_value=False)
    message = gr.Markdown(elem_id="model-message")

    def show(classifier):
        exports = models.exports()
        current = next((key for key, e in exports.items() if classifier is not None
                        and e.path.resolve() == classifier.path.resolve()), None)
        return (gr.update(value="" if classifier else "### No model loaded\n\n" + TRAIN_HINT,
                          visible=classifier is None),
                gr.update(choices=[(e.label if key == e.key else f"{e.label} · {key}", key)
                                   for key, e in exports.items()], value=current))

    def on_pick(key):
        # Only a listed export: the value comes from the browser.
        export = models.exports().get(key)
        if export is None:
            return "That model is no longer there: pick another."
        try:
            models.switch(export.path)
        except ModelNotFound as error:  # the reason names server paths: the console gets it
            print(f"error: {error}", file=sys.stderr)
            return f"error: {key} cannot be loaded (the app's console says why)."
        return ""

    picker.input(on_pick, picker, message, api_visibility="private", concurrency_id="model")
    return ModelView([banner, picker], show)


def _follow_model_switches(demo, models, views):
    """Each page redraws every view when the current model is not the one it shows: on load,
    after its own pick, and (polled) after a switch elsewhere (another page, a training)."""
    shown = gr.State(-1)  # the generation this page shows
    outputs = [shown, *(c for view in views for c in view.outputs)]

    def refresh(generation_shown):
        generation, classifier = models.snapshot()
        if generation == generation_shown:
            return [gr.skip()] * len(outputs)
        return [generation, *(v for view in views for v in view.show(classifier))]

    quick = dict(queue=False, show_progress="hidden", api_visibility="private")
    demo.load(refresh, shown, outputs, **quick)
    # "once": a redraw that outlasts the poll (rebuilding a model for the explain tab) is not
    # joined by a second one that read the same stale generation and would, finishing later,
    # clear an answer given to the new model in between.
    gr.Timer(MODEL_POLL_SECONDS).tick(refresh, shown, outputs, trigger_mode="once", **quick)


def launch(demo, host="127.0.0.1", port=7860, share=False, block=True, auth=None):
    """Queue and launch with the safe defaults (main and the tests share them).

    auth: (user, password) that every page and API call then needs (Gradio's login).
    """
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    # run_history=False: Gradio 6 otherwise keeps every image and answer in the browser and
    # offers to sync them to a Hugging Face bucket; a local demo has no use for either.
    # enable_monitoring=False: Gradio's /monitoring routes (on by default) tell any visitor
    # what the app has been asked; ssr_mode=False: no Node server in front of the app.
    return demo.launch(server_name=host, server_port=port, share=share, quiet=not block,
                       max_file_size=MAX_FILE_SIZE, prevent_thread_lock=not block,
                       run_history=False, enable_monitoring=False, ssr_mode=False, auth=auth,
                       app_kwargs={"middleware": [Middleware(UploadBound, demo=demo)]})


def _port(text):
    port = int(text) if text.isdigit() else 0  # 0 ("any free port"): Gradio's launch fails
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def _login(text):
    user, colon, password = text.partition(":")
    if not (user and colon and password):
        raise argparse.ArgumentTypeError(f"{text!r} is not USER:PASSWORD")
    return user, password


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python ui/app.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", metavar="DIR", help="export version dir or model base dir "
                                        "to start with (default: the newest export found)")
    parser.add_argument("--models-dir", metavar="DIR",
                        help="where the model picker looks and the Train tab exports "
                             "(default: ./saved_models, and the repo's)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=_port, default=7860, help="default 7860")
    parser.add_argument("--share", action="store_true",
                        help="also publish a public *.gradio.live link (off by default)")
    parser.add_argument("--auth", type=_login, metavar="USER:PASSWORD",
                        help="require this login for the page and the API (advised with "
                             "--share or a --host other than this machine)")
    parser.add_argument("--allow-training", action="store_true",
                        help="offer the Train tab on a --host other than this machine, or "
                             "with --share (it runs training on this machine for any visitor)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    roots = [pathlib.Path(args.models_dir)] if args.models_dir else \
        [pathlib.Path("saved_models"), REPO / "saved_models"]
    models = ModelHolder(roots=roots)
    # Training exports to saved_models/ where it ran: here, or (the usual case) the repo.
    path = args.model or newest_export(*roots)
    if path is None:
        print(TRAIN_HINT)
    else:
        try:
            classifier = models.switch(path)
        except ModelNotFound as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"Model: {classifier.path} ({len(classifier.class_names)} classes, "
              f"{classifier.image_size} px)")
    trainer = _trainer(args, models, roots[0])
    # SIGTERM (kill, systemd, the browser test) ends like Ctrl+C, so atexit cleans up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _warn(args)
    try:
        launch(build_demo(models=models, trainer=trainer), host=args.host, port=args.port,
               share=args.share, auth=args.auth)
    except OSError as error:  # e.g. the port is taken
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _trainer(args, models, models_dir):
    """The Train tab's trainer, or None where training is not offered: only a page on this
    machine may start trainings, unless --allow-training."""
    if not (args.allow_training or (args.host in LOOPBACK and not args.share)):
        print("Training is not offered (the app is reachable from other machines): add "
              "--allow-training to offer it")
        return None
    trainer = Trainer(pathlib.Path.cwd(), models_dir, on_export=models.switch,
                      extra_args=shlex.split(os.environ.get(TRAIN_ARGS_ENV, "")))
    atexit.register(trainer.shutdown)  # a training never outlives the app
    return trainer


def _warn(args):
    login = "" if args.auth else " (add --auth USER:PASSWORD to require a login)"
    if args.share:
        print("warning: --share publishes a public link (Gradio keeps it up to a week): "
              f"anyone who has it can use the app{login}")
    if args.host not in LOOPBACK:
        print(f"warning: binding {args.host}: anyone who can reach this machine can use the "
              f"app{login}")
    if args.allow_training and (args.share or args.host not in LOOPBACK):
        print("warning: --allow-training: any visitor can start a training on this machine")


if __name__ == "__main__":
    sys.exit(main())
