"""Train AlexNet, evaluate it and export a TF Serving-ready SavedModel.

    python -m alexnet_tf.train [--data cifar10|tfds:NAME|FOLDER|synthetic] [--variant cifar] ...

Reads top to bottom: config -> strategy and precision -> data -> model -> fit -> evaluate ->
plots and metrics -> export. Re-running the same command resumes an interrupted run.
"""

import dataclasses
import json
import math
import pathlib
import shutil
import sys
import time

import keras
import tensorflow as tf

from alexnet_tf import augment, budget, callbacks as callbacks_lib, config as config_lib
from alexnet_tf import data as data_lib, distribute, multiworker, plots, rundir, sources
from alexnet_tf.evaluate import compute_metrics, predict_split
from alexnet_tf.export import export_model
from alexnet_tf.model import build_model, count_flops, default_image_size, input_mean
from alexnet_tf.optim import PyTorchAdam
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


def train(cfg, locks=None):
    started = time.time()
    workdir = pathlib.Path(cfg.workdir or config_lib.default_workdir(cfg))
    export_dir = cfg.export_dir or f"saved_models/alexnet_{cfg.dataset_name}"
    cfg = dataclasses.replace(cfg, workdir=str(workdir), export_dir=export_dir)
    # -- Multi-worker (TF_CONFIG) ----------------------------------------------------------
    # Only the chief's outputs are of record; other workers write to a scratch directory of
    # their own, started empty (their training state comes from the chief) and removed at the end.
    task = multiworker.task_info()
    chief = task is None or task.is_chief
    if task is not None and cfg.time_budget:
        # Each worker would stop on its own clock (a resumed chief counts earlier sessions, the
        # others do not): one stopping alone leaves the rest waiting in an all-reduce forever.
        raise RunError("--time-budget is not supported with several workers (TF_CONFIG): "
                       "each would stop on its own clock; use --epochs")
    if not chief:
        workdir, export_dir = multiworker.worker_dirs(workdir, export_dir, task)
        multiworker.remove_scratch(workdir)
        print(f"Worker {task.index} of {task.num_workers} (not the chief): scratch outputs in "
              f"{workdir.parent}")
    # One training per workdir and export dir: the chief's (the others' are scratch).
    locks = locks if chief else None
    rundir.check(cfg, workdir, locks, export_dir)
    if pathlib.Path(export_dir).is_file():  # found now, not after the training
        raise RunError(f"--export-dir {export_dir} is a file, not a folder")

    # -- Strategy and precision -----------------------------------------------------------
    strategy, strategy_why = distribute.choose_strategy(cfg.cpu_replicas)
    policy, policy_why = distribute.choose_precision(cfg.precision)
    keras.mixed_precision.set_global_policy(policy)
    replicas = strategy.num_replicas_in_sync
    print(f"Strategy: {strategy_why}. Precision: {policy} ({policy_why}).")
    if cfg.batch_size < replicas:
        raise RunError(f"--batch-size {cfg.batch_size} is smaller than the {replicas} replicas")
    if cfg.batch_size % replicas:
        raise RunError(f"--batch-size {cfg.batch_size} (global) is not a multiple of the "
                       f"{replicas} replicas")
    if cfg.jit_compile and replicas > 1:
        # XLA compiles one step that reads every replica's variables: "Trying to access
        # resource ... located in device CPU:1 from device CPU:0" (checked on two logical CPU
        # devices; XLA's known issue tfvariable_on_a_different_device).
        raise RunError(f"--jit-compile does not work across the {replicas} replicas: drop it")
    if replicas > 1:
        print(f"Global batch {cfg.batch_size} = {replicas} replicas x "
              f"{cfg.batch_size // replicas}; learning rate {cfg.lr} (not rescaled).")
    image_size = cfg.image_size or default_image_size(cfg.variant)
    try:
        build_model(cfg.variant, num_classes=2, image_size=image_size)  # geometry check only
    except ValueError as error:
        raise RunError(str(error)) from None

    # -- Data -----------------------------------------------------------------------------
    tf.keras.utils.set_random_seed(cfg.seed)
    data = sources.load(cfg.data, image_size=image_size, val_fraction=cfg.val_fraction,
                        split_seed=cfg.split_seed, limit=cfg.limit, cache=cfg.cache,
                        crop=cfg.crop)
    class_names = data.class_names
    eigval, eigvec = augment.IMAGENET_EIGVAL, augment.IMAGENET_EIGVEC
    if cfg.lighting and cfg.pca == "data":
        if data.train.images is None:
            raise RunError("--pca data needs the training images in memory, and they are "
                           "streamed " + ("(drop --no-cache)" if not cfg.cache else
                                          "(the split is over the in-memory cache limit): use "
                                          "--pca imagenet"))
        eigval, eigvec = augment.pca_from_images(data.train.images, seed=cfg.seed)
    steps_per_epoch = data.train.size // cfg.batch_size
    if steps_per_epoch < 1:
        raise RunError(f"{data.train.size} training images make no batch of {cfg.batch_size}")
    if task is None and replicas > 1 and data.val.size < cfg.batch_size:  # see val_ds below
        raise RunError(f"{data.val.size} validation images make no whole batch of "
                       f"{cfg.batch_size} for the {replicas} replicas: lower --batch-size or "
                       "raise --val-fraction")
    # Every check has passed: only now may --overwrite delete.
    rundir.start(cfg, workdir, locks, export_dir)
    sources.write_bad_files(data.bad_files, workdir / "bad_files.txt")
    (workdir / "labels.txt").write_text("".join(f"{c}\n" for c in class_names))
    geometry = data_lib.geometry_for(image_size, cfg.crop)
    train_ds = data_lib.train_pipeline(
        data.train, geometry, batch_size=cfg.batch_size, num_classes=len(class_names),
        seed=cfg.seed, flip=cfg.flip, lighting_std=cfg.lighting, eigval=eigval, eigvec=eigvec,
        cutout=cfg.cutout, cutout_fill=input_mean(cfg.variant), mixup=cfg.mixup)
    # Under several replicas a last batch smaller than the replica count leaves one replica
    # empty, and TF's CPU Conv2D fails on an empty batch: Keras' fit then monitors whole
    # batches only. The final evaluation below always uses every image.
    val_ds = data_lib.eval_pipeline(data.val, geometry, batch_size=cfg.batch_size,
                                    num_classes=len(class_names),
                                    drop_remainder=task is None and replicas > 1)
    print(f"Data: {data.name}, {len(class_names)} classes, {data.train.size} train / "
          f"{data.val.size} val / {data.test.size if data.test else 0} test images.")

    # -- Model, optimiser, metrics: all inside the strategy's scope ------------------------
    model, schedule = compiled_model(cfg, strategy, len(class_names), image_size,
                                     steps_per_epoch)
    print(f"Model: alexnet '{cfg.variant}' at {image_size} px, {model.count_params():,} "
          f"parameters, {count_flops(model) / 1e9:.3f} GFLOPs per image. Recipe: {cfg.recipe}.")

    # -- Fit ------------------------------------------------------------------------------
    # Written by the clock when the budget ends training; removed with the backup after the
    # export. A resumed run that finds it trains no further than the epoch it names.
    budget_reached = workdir / "backup" / "time_budget_reached"
    past = rundir.progress(workdir)  # of a resumed run; nothing for a new one
    clock = budget.TrainingClock(
        past.minutes, cfg.time_budget, epochs_before=past.epochs,
        schedule=schedule if isinstance(schedule, budget.FittedCosineDecay) else None,
        steps_per_epoch=steps_per_epoch, max_epochs=cfg.epochs, marker=budget_reached)
    callbacks = [
        # With --schedule plateau: divide by 10 when validation accuracy stops improving, three
        # times at most (section 5). Ahead of the rest, so the backup holds a cut and the
        # clock logs the rate the next epoch uses.
        *([keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", mode="max", factor=0.1,
                                             patience=4, min_lr=cfg.lr * 1e-3)]
          if cfg.schedule == "plateau" else []),
        clock,  # it adds `minutes` to the logs the ones below see
        # Resume after a crash or kill: the same command continues at the next epoch.
        # The backup outlives `fit` until the export is written: a crash in evaluation or
        # export resumes after the last epoch instead of training again.
        # double_checkpoint: a kill mid-save leaves the previous epoch's backup to resume from.
        # A damaged training_metadata.json falls back to that copy too.
        callbacks_lib.BackupAndRestore(str(workdir / "backup"), delete_checkpoint=False,
                                       double_checkpoint=True),
        # With --ema: validation and the callbacks below it see the averaged weights; the
        # backup above still holds the raw ones, so a resumed run trains on from those. Any
        # callback that stops training must come above it (see SwapEMAWeights).
        *([SwapEMAWeights(swap_on_epoch=True)] if cfg.ema else []),
        # Saved under another name and renamed: a kill mid-save keeps the previous best.
        callbacks_lib.ModelCheckpoint(
            str(workdir / "best.keras"), monitor="val_accuracy", mode="max", save_best_only=True,
            initial_value_threshold=past.best_val_accuracy),
        keras.callbacks.CSVLogger(str(workdir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(workdir / "tensorboard")),
        keras.callbacks.TerminateOnNaN(),
    ]
    rundir.record(cfg, workdir)
    epochs = cfg.epochs
    if clock.budget_used_up_at:
        # It died after the budget stopped it. Fit up to that epoch: BackupAndRestore restores
        # the weights (or, killed before its save, the epoch is trained again), fit finalises
        # any EMA average, and no epoch runs past the budget.
        epochs = clock.budget_used_up_at
        print(f"The run's time budget ran out after epoch {epochs}: training no further")
    fit_started = time.time()
    try:
        if task is None:
            history = model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                                callbacks=callbacks, verbose=_verbose(cfg.verbose), shuffle=False)
        else:  # Keras 3.15's fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585)
            history = multiworker.fit(model, strategy, train_ds, val_ds, epochs=epochs,
                                      steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                                      verbose=_verbose(cfg.verbose))
    # A full disk, or a backup damaged beyond its previous copy.
    except (OSError, callbacks_lib.DamagedBackup) as error:
        raise RunError(f"{error}; if {workdir / 'backup'} is damaged, delete it to train "
                       "again from the start") from None
    fit_seconds = time.time() - fit_started
    losses = history.history.get("loss", [])
    # TerminateOnNaN stops a run too; a NaN in the epoch the budget ran out is still a NaN.
    if any(not math.isfinite(v) for v in losses) or (model.stop_training
                                                     and not clock.out_of_time):
        # The backup holds the diverged weights: resuming would diverge again (and without
        # the budget's mark, which would export them unchecked).
        budget_reached.unlink(missing_ok=True)
        best = workdir / "best.keras"
        raise RunError("Training stopped: the loss became NaN or infinite. Start again with a "
                       "lower --lr or --precision float32, and --overwrite or another --workdir"
                       + (f"; the best epoch so far is in {best}" if best.is_file() else ""))
    if clock.out_of_time:
        fitted = (f"; the cosine schedule was fitted to {clock.planned_epochs} of {cfg.epochs} "
                  "epochs" if clock.schedule is not None else "")
        print(f"Time budget of {cfg.time_budget:g} minutes reached after {len(losses)} "
              f"epoch(s) this session{fitted}.")
    epochs_run = len(losses)
    epochs_done = rundir.progress(workdir).epochs
    if not chief:  # the chief evaluates, plots, writes metrics.json and exports
        multiworker.remove_scratch(workdir)
        print(f"Worker {task.index} done: {epochs_run} epoch(s) trained; the chief writes the "
              "run's outputs")
        return 0

    # -- Evaluate ---------------------------------------------------------------------------
    eval_name, eval_split = ("test", data.test) if data.test else ("val", data.val)
    # No Python control flow to convert: autograph=False spares a warning about the lambda.
    predict = tf.function(lambda x: tf.nn.softmax(tf.cast(model(x, training=False), tf.float32)),
                          autograph=False)
    eval_started = time.time()
    probabilities, labels = predict_split(
        predict, data_lib.eval_pipeline(eval_split, geometry, batch_size=cfg.batch_size))
    eval_seconds = time.time() - eval_started
    metrics = {"split": eval_name, **compute_metrics(probabilities, labels, class_names)}
    if cfg.tta:
        ten = predict_split(predict, data_lib.eval_pipeline(
            eval_split, geometry, batch_size=cfg.batch_size, ten_crop=True), True)
        tta = compute_metrics(*ten, class_names)
        metrics.update(top1_10crop=tta["top1"], top5_10crop=tta["top5"])
    metrics.update(
        epochs=epochs_done,
        epochs_this_session=epochs_run,
        train_examples_per_second=(epochs_run * steps_per_epoch * cfg.batch_size / fit_seconds
                                   if epochs_run else None),
        eval_examples_per_second=len(labels) / eval_seconds,
        train_seconds_this_session=fit_seconds,
        wall_seconds=time.time() - started,
        precision=policy, strategy=strategy_why, replicas=replicas,
    )
    if clock.schedule is not None:  # the cosine schedule was fitted to the time budget
        metrics["schedule_epochs"] = clock.planned_epochs
    plots.training_curves(workdir / "history.csv", workdir / "training_curves.png")
    plots.confusion_matrix(metrics["confusion_matrix"], class_names,
                           workdir / "confusion_matrix.png", title=f"{data.name} ({eval_name})")

    # -- Export -----------------------------------------------------------------------------
    summary = {k: v for k, v in metrics.items() if k not in ("confusion_matrix",)}
    # A relative --data means nothing from another directory: evaluate compares this path.
    data_path = {"data_path": str(pathlib.Path(cfg.data).resolve())} if config_lib.is_folder(
        cfg.data) else {}
    version = rundir.exported_version(workdir, export_dir)  # by a session killed after it
    if version is None:
        version = export_model(model, export_dir, class_names=class_names,
                               crop_fraction=geometry.crop_fraction,
                               metadata={"config": cfg.record(), "metrics": summary, **data_path})
        rundir.record_export(workdir, version)
    else:
        print(f"This run exported {version} before it was stopped: not exported again")
    # metrics.json marks the run finished; written last, so a crash before resumes.
    rundir.write_atomically(workdir / "metrics.json", json.dumps(metrics, indent=2))
    shutil.rmtree(workdir / "backup", ignore_errors=True)
    print(f"\n{eval_name}: top-1 {metrics['top1']:.4f}, top-5 {metrics['top5']:.4f} "
          f"({metrics['num_examples']} images)"
          + (f"; 10-crop top-1 {metrics['top1_10crop']:.4f}" if cfg.tta else ""))
    print(f"Run directory: {workdir} (config.json, metrics.json, history.csv, best.keras, "
          f"training_curves.png, confusion_matrix.png, tensorboard/)")
    print(f"Exported model: {version}")
    print(f"Try it: python ui/app.py --model {version}")
    return 0


def compiled_model(cfg, strategy, num_classes, image_size, steps_per_epoch):
    """The model, compiled with the recipe's optimiser, loss and metrics, inside the strategy's
    scope (TF's distributed-training guide: variables are created there). Returns (model, the
    learning rate or schedule). The rate is the recipe's whatever the replica count: the global
    batch stays the same, split across the replicas."""
    with strategy.scope():
        schedule = _schedule(cfg, steps_per_epoch)
        model = build_model(cfg.variant, num_classes=num_classes, image_size=image_size,
                            dropout=cfg.dropout, conv_dropout=cfg.conv_dropout,
                            init=cfg.init, l2=cfg.l2)
        model.compile(
            optimizer=_optimizer(cfg, schedule),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                      label_smoothing=cfg.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                     keras.metrics.TopKCategoricalAccuracy(k=min(5, num_classes), name="top5")],
            jit_compile=cfg.jit_compile,
        )
    return model, schedule


def _schedule(cfg, steps_per_epoch):
    """The learning rate: a number, or (cosine) a schedule a time budget can shorten."""
    if cfg.schedule != "cosine":
        return cfg.lr
    # Linear warm-up to lr, then cosine decay to 0 at the last step (Keras' CosineDecay).
    # Short runs keep at most a fifth of their steps for the warm-up.
    total = cfg.epochs * steps_per_epoch
    warmup = int(min(cfg.warmup_epochs * steps_per_epoch, total / 5))
    return budget.FittedCosineDecay(
        0.0 if warmup else cfg.lr, decay_steps=max(1, total - warmup),
        warmup_target=cfg.lr if warmup else None, warmup_steps=warmup)


def _optimizer(cfg, lr):
    # Polyak averaging (Keras use_ema): the average starts at the first step's weights.
    ema = dict(use_ema=True, ema_momentum=cfg.ema) if cfg.ema else {}
    if cfg.optimizer == "adam":  # PyTorch's rule: `seed` reproduces a PyTorch training
        return PyTorchAdam(lr, coupled_weight_decay=cfg.coupled_weight_decay,
                           weight_decay=cfg.weight_decay or None, **ema)
    return keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                weight_decay=cfg.weight_decay or None, **ema)


class SwapEMAWeights(keras.callbacks.SwapEMAWeights):
    """Keras' callback, also right when training stops before its last epoch.

    With swap_on_epoch, Keras leaves the averaged weights in the model at the end of the last
    epoch and copies them into the average, so that fit's closing finalize_variable_values
    (average -> model) keeps them. It does so only when epoch == epochs - 1: a run stopped
    earlier (--time-budget, a NaN) would end with the raw weights it never validated.
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.model.stop_training and epoch != self.params["epochs"] - 1:
            self._finalize_ema_values()


def _verbose(value):
    return value if value == "auto" else int(value)


if __name__ == "__main__":
    sys.exit(main())
