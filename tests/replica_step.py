"""One optimiser step of the trainer's compiled model on the same global batch, on one
device and on two logical CPU devices (MirroredStrategy). Prints, as JSON, how far the farther
replica's weights end up from one device's, relative to how far the step moved them. test_multiworker runs it in a process of
its own: logical devices must be set up before TensorFlow initialises.

    python tests/replica_step.py [train flags]
"""

import json
import sys

import numpy as np
import tensorflow as tf

from alexnet_tf import config, data as data_lib, distribute, sources, train

REPLICAS = 2


def batches(cfg, steps):
    """The first `steps` batches of the training pipeline, fixed in memory for both runs."""
    data = sources.load(cfg.data, image_size=cfg.image_size, split_seed=cfg.split_seed,
                        limit=cfg.limit)
    pipeline = data_lib.train_pipeline(
        data.train, train.train_preset(cfg, cfg.image_size, data), batch_size=cfg.batch_size,
        num_classes=len(data.class_names), seed=cfg.seed)
    fixed = [tuple(t.numpy() for t in batch) for batch in pipeline.take(steps)]
    dataset = tf.data.Dataset.from_tensors(fixed[0])
    for batch in fixed[1:]:
        dataset = dataset.concatenate(tf.data.Dataset.from_tensors(batch))
    return dataset, len(data.class_names)


def weights_after(cfg, strategy, dataset, num_classes, steps, start=None):
    """(the weights before, every replica's copy of them after `steps`)."""
    model, _ = train.compiled_model(cfg, strategy, num_classes, cfg.image_size, steps)
    if start is not None:
        model.set_weights(start)
    before = [w.copy() for w in model.get_weights()]
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    per_weight = [[np.asarray(copy) for copy in strategy.experimental_local_results(w.value)]
                  for w in model.weights]
    return before, list(zip(*per_weight))  # get_weights() reads the first replica's only


def main(argv):
    distribute.split_cpu(REPLICAS)
    cfg = config.parse(["--data", "synthetic", "--precision", "float32", *argv])
    steps = 1
    dataset, num_classes = batches(cfg, steps)
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    two = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(REPLICAS)])
    start, (after_one,) = weights_after(cfg, one, dataset, num_classes, steps)
    _, replicas = weights_after(cfg, two, dataset, num_classes, steps, start)

    def norm(pairs):
        return float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in pairs)))

    moved = norm(zip(after_one, start))
    gap = max(norm(zip(copy, after_one)) for copy in replicas)  # the farthest replica's
    print(json.dumps({"moved": moved, "gap": gap, "relative_gap": gap / moved,
                      "replicas": len(replicas)}))


if __name__ == "__main__":
    main(sys.argv[1:])
