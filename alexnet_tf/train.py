"""Train AlexNet, evaluate it and export a TF Serving-ready SavedModel.

    python -m alexnet_tf.train [--data cifar10|tfds:NAME|FOLDER|synthetic] [--variant cifar] ...

`train` is the run's steps: run directories -> strategy and precision -> data -> model ->
callbacks -> fit -> evaluate -> export, each a call into the module that owns it. Re-running
the same command resumes an interrupted run.
"""

import dataclasses
import math
import pathlib
import sys
import time

import keras
import tensorflow as tf

from alexnet_tf import augment, budget, callbacks as callbacks_lib, config as config_lib
from alexnet_tf import data as data_lib, distribute, evaluate, multiworker, plots, preflight
from alexnet_tf import optim, rundir, sources
from alexnet_tf.export import export_model
from alexnet_tf.model import build_model, count_flops, default_image_size, input_mean
from alexnet_tf.rundir import RunError


def main(argv=None):
    try:
        cfg, print_only = config_lib.parse_command(argv)
        if print_only:
            print(cfg.to_json())
            return 0
        with rundir.Locks() as locks:  # released on return; by the OS if the process dies
            return train(cfg, locks)
    except (config_lib.ConfigError, data_lib.DataError, RunError,
            multiworker.TFConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk or a folder that turned unwritable mid-run
        print(f"error: {error}", file=sys.stderr)
        return 2


def train(cfg, locks=None):
    started = time.time()
    cfg = with_output_dirs(cfg)
    task = multiworker.task_info()
    workdir, export_dir = run_dirs(cfg, task, locks)
    strategy, precision = strategy_and_precision(cfg)
    image_size = cfg.image_size or default_image_size(cfg.variant)
    preflight.check_geometry(cfg.variant, image_size)
    inputs = load_inputs(cfg, image_size, strategy.num_replicas_in_sync, task)
    rundir.start(cfg, workdir, locks if _is_chief(task) else None, export_dir)
    write_run_files(inputs, workdir)
    model, schedule = compiled_model(cfg, strategy, len(inputs.class_names), image_size,
                                     inputs.steps_per_epoch)
    print(f"Model: alexnet '{cfg.variant}' at {image_size} px, {model.count_params():,} "
          f"parameters, {count_flops(model) / 1e9:.3f} GFLOPs per image. Recipe: {cfg.recipe}.")
    clock = callbacks_lib.training_clock(cfg, workdir, schedule, inputs.steps_per_epoch)
    callbacks = callbacks_lib.for_run(cfg, workdir, clock)
    rundir.record(cfg, workdir)
    fit_started = time.time()
    history = fit(model, strategy, inputs, callbacks, epochs=_epochs_left(cfg, clock),
                  multi_worker=task is not None, verbose=cfg.verbose, workdir=workdir)
    fit_seconds = time.time() - fit_started
    check_converged(history, model, clock, workdir, cfg)
    epochs_run = len(history.history.get("loss", []))
    if not _is_chief(task):  # the chief evaluates, plots, writes metrics.json and exports
        multiworker.remove_scratch(workdir)
        print(f"Worker {task.index} done: {epochs_run} epoch(s) trained; the chief writes the "
              "run's outputs")
        return 0
    metrics = evaluate_run(model, inputs, cfg, workdir)
    metrics.update(
        epochs=rundir.progress(workdir).epochs, epochs_this_session=epochs_run,
        train_examples_per_second=(epochs_run * inputs.steps_per_epoch * cfg.batch_size
                                   / fit_seconds if epochs_run else None),
        train_seconds_this_session=fit_seconds, wall_seconds=time.time() - started,
        **precision, replicas=strategy.num_replicas_in_sync,
        **({"schedule_epochs": clock.planned_epochs} if clock.schedule is not None else {}))
    version = export(model, cfg, workdir, export_dir, inputs, metrics)
    rundir.finish(workdir, metrics)
    report(cfg, workdir, metrics, version)
    return 0


def with_output_dirs(cfg):
    """`cfg` with its workdir and export dir filled in."""
    workdir = cfg.workdir or config_lib.default_workdir(cfg)
    export_dir = cfg.export_dir or f"saved_models/alexnet_{cfg.dataset_name}"
    return dataclasses.replace(cfg, workdir=str(workdir), export_dir=export_dir)


def _is_chief(task):
    return task is None or task.is_chief


def run_dirs(cfg, task, locks):
    """(workdir, export dir) of this process, checked (and locked) for this run.

    Only the chief's outputs are of record; other workers write to a scratch directory of their
    own, started empty (their training state comes from the chief) and removed at the end."""
    workdir, export_dir = pathlib.Path(cfg.workdir), cfg.export_dir
    if not _is_chief(task):
        workdir, export_dir = multiworker.worker_dirs(workdir, export_dir, task)
        multiworker.remove_scratch(workdir)
        locks = None  # one training per workdir and export dir: the chief's
        print(f"Worker {task.index} of {task.num_workers} (not the chief): scratch outputs in "
              f"{workdir.parent}")
    rundir.check(cfg, workdir, locks, export_dir)
    preflight.check_command(cfg, task, export_dir)
    return workdir, export_dir


def strategy_and_precision(cfg):
    """The tf.distribute strategy, with the global mixed-precision policy set; and what to
    record about both in metrics.json."""
    strategy, strategy_why = distribute.choose_strategy(cfg.cpu_replicas)
    policy, policy_why = distribute.choose_precision(cfg.precision)
    keras.mixed_precision.set_global_policy(policy)
    replicas = strategy.num_replicas_in_sync
    print(f"Strategy: {strategy_why}. Precision: {policy} ({policy_why}).")
    preflight.check_replicas(cfg, replicas)
    if replicas > 1:  # the rate is the recipe's: the global batch is the same, split up
        print(f"Global batch {cfg.batch_size} = {replicas} replicas x "
              f"{cfg.batch_size // replicas}; learning rate {cfg.lr} (not rescaled).")
    return strategy, {"precision": policy, "strategy": strategy_why}


@dataclasses.dataclass
class Inputs:
    """The loaded data and the pipelines a run trains and validates on."""

    data: data_lib.Data
    geometry: data_lib.Geometry
    train: tf.data.Dataset
    val: tf.data.Dataset
    steps_per_epoch: int

    @property
    def class_names(self):
        return self.data.class_names


def load_inputs(cfg, image_size, replicas, task):
    tf.keras.utils.set_random_seed(cfg.seed)
    data = sources.load(cfg.data, image_size=image_size, val_fraction=cfg.val_fraction,
                        split_seed=cfg.split_seed, limit=cfg.limit, cache=cfg.cache,
                        crop=cfg.crop)
    preflight.check_data(cfg, data, replicas, multi_worker=task is not None)
    geometry = data_lib.geometry_for(image_size, cfg.crop)
    num_classes = len(data.class_names)
    train_ds = data_lib.train_pipeline(data.train, train_preset(cfg, image_size, data),
                                       batch_size=cfg.batch_size, num_classes=num_classes,
                                       seed=cfg.seed)
    # Under several replicas a last batch smaller than the replica count leaves one replica
    # empty, and TF's CPU Conv2D fails on an empty batch: Keras' fit then validates on whole
    # batches only. The final evaluation always uses every image.
    val_ds = data_lib.eval_pipeline(data.val, geometry, batch_size=cfg.batch_size,
                                    num_classes=num_classes,
                                    drop_remainder=task is None and replicas > 1)
    print(f"Data: {data.name}, {num_classes} classes, {data.train.size} train / "
          f"{data.val.size} val / {data.test.size if data.test else 0} test images.")
    return Inputs(data, geometry, train_ds, val_ds, data.train.size // cfg.batch_size)


def train_preset(cfg, image_size, data):
    """The run's augmentation: Cutout paints the colour the model's normalisation maps to 0,
    and --pca data takes lighting's eigen-decomposition from the training images."""
    eigen = (augment.pca_from_images(data.train.images, seed=cfg.seed)
             if cfg.lighting and cfg.pca == "data" else None)
    return augment.train_preset(cfg, image_size=image_size, fill=input_mean(cfg.variant),
                                eigen=eigen)


def write_run_files(inputs, workdir):
    sources.write_bad_files(inputs.data.bad_files, workdir / "bad_files.txt")
    (workdir / "labels.txt").write_text("".join(f"{c}\n" for c in inputs.class_names))


def compiled_model(cfg, strategy, num_classes, image_size, steps_per_epoch):
    """The model, compiled with the recipe's optimiser, loss and metrics, inside the strategy's
    scope (TF's distributed-training guide: variables are created there). Returns (model, the
    learning rate or schedule). The rate is the recipe's whatever the replica count: the global
    batch stays the same, split across the replicas."""
    with strategy.scope():
        schedule = learning_rate(cfg, steps_per_epoch)
        model = build_model(cfg.variant, num_classes=num_classes, image_size=image_size,
                            dropout=cfg.dropout, conv_dropout=cfg.conv_dropout,
                            init=cfg.init, l2=cfg.l2)
        model.compile(
            optimizer=optimizer(cfg, schedule),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                      label_smoothing=cfg.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                     keras.metrics.TopKCategoricalAccuracy(k=min(5, num_classes), name="top5")],
            jit_compile=cfg.jit_compile,
        )
    return model, schedule


def learning_rate(cfg, steps_per_epoch):
    """A number, or (cosine) a schedule a time budget can shorten."""
    if cfg.schedule != "cosine":
        return cfg.lr
    return budget.FittedCosineDecay.linear_warmup(cfg.lr, cfg.epochs * steps_per_epoch,
                                                  cfg.warmup_epochs * steps_per_epoch)


def optimizer(cfg, lr):
    # Polyak averaging (Keras use_ema): the average starts at the first step's weights.
    ema = dict(use_ema=True, ema_momentum=cfg.ema) if cfg.ema else {}
    if cfg.optimizer == "adam":  # PyTorch's rule: `seed` reproduces a PyTorch training
        return optim.PyTorchAdam(lr, coupled_weight_decay=cfg.coupled_weight_decay,
                                 weight_decay=cfg.weight_decay or None, **ema)
    return optim.SGD(lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                     weight_decay=cfg.weight_decay or None, **ema)


def _epochs_left(cfg, clock):
    if not clock.budget_used_up_at:
        return cfg.epochs
    # It died after the budget stopped it. Fit up to that epoch: BackupAndRestore restores the
    # weights (or, killed before its save, the epoch is trained again), fit finalises any EMA
    # average, and no epoch runs past the budget.
    print(f"The run's time budget ran out after epoch {clock.budget_used_up_at}: "
          "training no further")
    return clock.budget_used_up_at


def fit(model, strategy, inputs, callbacks, *, epochs, multi_worker, verbose, workdir):
    """Keras' fit (multiworker's under TF_CONFIG: Keras' own fails under
    MultiWorkerMirroredStrategy, keras-team/keras#20585); returns its History."""
    verbose = verbose if verbose == "auto" else int(verbose)
    try:
        if not multi_worker:
            return model.fit(inputs.train, validation_data=inputs.val, epochs=epochs,
                             callbacks=callbacks, verbose=verbose, shuffle=False)
        return multiworker.fit(model, strategy, inputs.train, inputs.val, epochs=epochs,
                               steps_per_epoch=inputs.steps_per_epoch, callbacks=callbacks,
                               verbose=verbose)
    except (OSError, callbacks_lib.DamagedBackup) as error:  # a full disk, a damaged backup
        raise RunError(f"{error}; if {workdir / 'backup'} is damaged, delete it to train "
                       "again from the start") from None


def check_converged(history, model, clock, workdir, cfg):
    """Refuses to go on with weights whose loss became NaN or infinite (TerminateOnNaN stops
    such a run; a NaN in the epoch the budget ran out is still a NaN)."""
    losses = history.history.get("loss", [])
    if any(not math.isfinite(v) for v in losses) or (model.stop_training
                                                     and not clock.out_of_time):
        # The backup holds the diverged weights: resuming would diverge again (and, with the
        # budget's mark, export them unchecked).
        callbacks_lib.budget_marker(workdir).unlink(missing_ok=True)
        best = workdir / "best.keras"
        raise RunError("Training stopped: the loss became NaN or infinite. Start again with a "
                       "lower --lr or --precision float32, and --overwrite or another --workdir"
                       + (f"; the best epoch so far is in {best}" if best.is_file() else ""))
    if clock.out_of_time:
        fitted = (f"; the cosine schedule was fitted to {clock.planned_epochs} of {cfg.epochs} "
                  "epochs" if clock.schedule is not None else "")
        print(f"Time budget of {cfg.time_budget:g} minutes reached after {len(losses)} "
              f"epoch(s) this session{fitted}.")


def evaluate_run(model, inputs, cfg, workdir):
    """Metrics on the test split (else validation), with their plots in the workdir."""
    name, split = ("test", inputs.data.test) if inputs.data.test else ("val", inputs.data.val)
    metrics = {"split": name, **evaluate.evaluate_model(
        model, split, inputs.geometry, inputs.class_names, batch_size=cfg.batch_size,
        tta=cfg.tta)}
    plots.training_curves(workdir / "history.csv", workdir / "training_curves.png")
    plots.confusion_matrix(metrics["confusion_matrix"], inputs.class_names,
                           workdir / "confusion_matrix.png", title=f"{inputs.data.name} ({name})")
    return metrics


def export(model, cfg, workdir, export_dir, inputs, metrics):
    """The exported version: a new one, or the one this run exported before it was stopped."""
    version = rundir.exported_version(workdir, export_dir)
    if version is not None:
        print(f"This run exported {version} before it was stopped: not exported again")
        return version
    summary = {k: v for k, v in metrics.items() if k != "confusion_matrix"}
    # A relative --data means nothing from another directory: evaluate compares this path.
    data_path = ({"data_path": str(pathlib.Path(cfg.data).resolve())}
                 if sources.is_folder(cfg.data) else {})
    version = export_model(model, export_dir, class_names=inputs.class_names,
                           crop_fraction=inputs.geometry.crop_fraction,
                           metadata={"config": cfg.record(), "metrics": summary, **data_path},
                           precision=cfg.export_precision)
    rundir.record_export(workdir, version)
    return version


def report(cfg, workdir, metrics, version):
    print(f"\n{metrics['split']}: top-1 {metrics['top1']:.4f}, top-5 {metrics['top5']:.4f} "
          f"({metrics['num_examples']} images)"
          + (f"; 10-crop top-1 {metrics['top1_10crop']:.4f}" if cfg.tta else ""))
    print(f"Run directory: {workdir} (config.json, metrics.json, history.csv, best.keras, "
          f"training_curves.png, confusion_matrix.png, tensorboard/)")
    print(f"Exported model: {version}")
    print(f"Try it: python ui/app.py --model {version}")


if __name__ == "__main__":
    sys.exit(main())
