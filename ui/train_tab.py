"""The Train tab: start a training (ui.trainer) from the page, watch it, cancel it.

The training lives on the server, not in the page: every page (a reload, a second browser)
polls the one Trainer and shows the same run.
"""

import gradio as gr
import pandas as pd

from alexnet_tf.model import VARIANTS
from ui.trainer import BUDGETS, CIFAR10, Settings, TrainingRefused

CIFAR_CHOICE = "CIFAR-10 (downloaded by tensorflow-datasets)"
FOLDER_CHOICE = "A folder of class subfolders"
POLL_SECONDS = 1.0
STATE_TITLES = {"running": "Training", "cancelling": "Cancelling", "finished": "Finished",
                "cancelled": "Cancelled", "failed": "Failed"}


def describe(status):
    """The status as a few lines of Markdown."""
    if status.state == "idle":
        return "No training yet. Pick the data, a variant and a time budget, then **Start**."
    facts = [f"**{STATE_TITLES[status.state]}** `{status.run_name}` (process {status.pid})"]
    if status.busy:
        if status.epoch:
            planned = f" of about {status.epochs_planned}" if status.epochs_planned else ""
            facts.append(f"epoch {status.epoch}{planned}")
        else:
            facts.append(status.phase)
        if status.images_per_second:
            facts.append(f"{status.images_per_second:,.0f} images/s")
        if status.minutes_left is not None:
            facts.append(f"about {status.minutes_left:.0f} min left")
    if status.epochs_done:
        facts.append(f"{status.epochs_done} epoch(s) done, validation accuracy "
                     f"{status.val_accuracy:.1%} after {status.minutes:.1f} min")
    text = " · ".join(facts)
    return text + (f"\n\n{status.message}" if status.message else "")


def curve_frame(status):
    return pd.DataFrame(status.curve, columns=["minutes", "validation accuracy"])


def settings_from(source, folder, variant, minutes):
    data = CIFAR10 if source == CIFAR_CHOICE else (folder or "").strip()
    return Settings(data=data, variant=variant, minutes=float(minutes))


class TrainTab:
    """Builds the tab (inside a gr.Tab) around a ui.trainer.Trainer."""

    def __init__(self, trainer):
        self.trainer = trainer
        with gr.Row():
            with gr.Column(scale=1):
                self.source = gr.Radio([CIFAR_CHOICE, FOLDER_CHOICE], value=CIFAR_CHOICE,
                                       label="Data")
                self.folder = gr.Textbox(label="Folder (on this machine)", elem_id="train-folder",
                                         placeholder="/path/to/images (one subfolder per class)")
                self.variant = gr.Dropdown(list(VARIANTS), value="cifar", label="Variant")
                self.minutes = gr.Radio([str(m) for m in BUDGETS], value="15",
                                        label="Time budget (minutes)")
                with gr.Row():
                    self.start = gr.Button("Start", variant="primary", elem_id="train-start")
                    self.cancel = gr.Button("Cancel", variant="stop", elem_id="train-cancel",
                                            interactive=False)
            with gr.Column(scale=2):
                self.status = gr.Markdown(describe(trainer.status()), elem_id="train-status")
                self.curve = gr.LinePlot(curve_frame(trainer.status()), x="minutes",
                                         y="validation accuracy", y_lim=[0, 1], height=260,
                                         label="Validation accuracy against training minutes")
                with gr.Accordion("Output of the training command", open=False):
                    self.log = gr.Textbox(lines=12, max_lines=12, show_label=False,
                                          elem_id="train-log")
        self.shown_epochs = gr.State(-1)  # per page: redraw the curve only when it grows
        form = [self.source, self.folder, self.variant, self.minutes]
        self.outputs = [self.status, self.curve, self.log, self.start, self.cancel,
                        self.shown_epochs, *form]
        quick = dict(queue=False, show_progress="hidden", api_visibility="private")
        self.start.click(self.on_start, [*form, self.shown_epochs], self.outputs, **quick)
        self.cancel.click(self.on_cancel, self.shown_epochs, self.outputs, **quick)
        gr.Timer(POLL_SECONDS).tick(self.on_poll, self.shown_epochs, self.outputs, **quick)
        self.loaded = (self.on_poll, self.shown_epochs, self.outputs)  # for demo.load

    def on_start(self, source, folder, variant, minutes, shown):
        try:
            self.trainer.start(settings_from(source, folder, variant, minutes))
        except TrainingRefused as refusal:
            gr.Warning(str(refusal))
            answer = list(self.on_poll(-1))
            answer[0] = f"**Not started**: {refusal}\n\n{answer[0]}"
            return tuple(answer)
        return self.on_poll(-1)

    def on_cancel(self, shown):
        self.trainer.cancel()
        return self.on_poll(shown)

    def on_poll(self, shown):
        """Every output from the trainer's state; the form shows the settings of a running
        training (so a second page sees what runs, not a fresh form)."""
        status = self.trainer.status()
        curve = curve_frame(status) if status.epochs_done != shown else gr.skip()
        if status.busy and status.settings is not None:
            settings = status.settings
            form = (CIFAR_CHOICE if settings.data == CIFAR10 else FOLDER_CHOICE,
                    "" if settings.data == CIFAR10 else settings.data, settings.variant,
                    f"{settings.minutes:g}")
        else:
            form = (gr.skip(),) * 4
        return (describe(status), curve, status.log,
                gr.update(interactive=not status.busy),
                gr.update(interactive=status.state == "running"),
                status.epochs_done, *form)
