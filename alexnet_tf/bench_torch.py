"""The bench's training step in PyTorch, for `python -m alexnet_tf.bench --compare-torch`.

    python alexnet_tf/bench_torch.py [--variant cifar|seed] [--image-size S] [--batch-size B]
        [--steps N] [--label-smoothing L] [--no-compile]

Prints JSON: images/s of the same network and step in each PyTorch CPU setting. The bench runs
it as a script in its own process (not `-m`, which would import the package and TensorFlow), so
PyTorch's OpenMP threads and TensorFlow's thread pools never share a process. PyTorch is
optional: without it this exits with code 2 and one line.

`cifar` is the `cifar` variant layer for layer: the model's own input normalisation, LRN as
`nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)` (PyTorch divides alpha by the window size
n, TensorFlow and the paper do not: alpha * n gives the same function), 3x3/2 max-pools that
halve the size as TensorFlow's "same" ones do. `seed` is the classic PyTorch CIFAR-10 script's
network (torchvision's features, a 4096-1024 head). Both train as the bench's Keras step does:
SGD with Nesterov momentum 0.9, cross-entropy with the recipe's label smoothing, dropout.
"""

import argparse
import json
import os
import sys
import time

MEAN = (123.675, 116.28, 103.53)  # model.RGB_MEAN / RGB_STD, repeated: this module imports no TF
STD = (58.395, 57.12, 57.375)


def cifar_net(torch, num_classes):
    nn = torch.nn

    class Normalize(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

        def forward(self, x):
            return (x - self.mean) / self.std

    def conv(cin, cout, k):
        return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(inplace=True)]

    def pool_lrn(lrn=True):
        pool = [nn.MaxPool2d(3, 2, padding=1)]
        return pool + ([nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)] if lrn else [])

    return nn.Sequential(
        Normalize(),
        *conv(3, 64, 5), *pool_lrn(),
        *conv(64, 128, 5), *pool_lrn(),
        *conv(128, 256, 3), *conv(256, 256, 3), *conv(256, 128, 3), *pool_lrn(lrn=False),
        nn.Flatten(),
        nn.Linear(128 * 4 * 4, 1024), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(1024, 1024), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(1024, num_classes),
    )


def seed_net(torch, num_classes):
    """/work/shared/reference/seed_pytorch.py's AlexNet, as the classic script writes it."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, 1, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, 1, 1), nn.ReLU(True),
        nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(True),
        nn.Conv2d(256, 256, 3, 1, 1), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(),
        nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(True),
        nn.Dropout(), nn.Linear(4096, 1024), nn.ReLU(True), nn.Linear(1024, num_classes),
    )


# name -> (bfloat16 autocast, channels_last, torch.compile)
SETTINGS = {
    "float32": (False, False, False),
    "bf16_autocast": (True, False, False),
    "bf16_channels_last": (True, True, False),
    "bf16_channels_last_compile": (True, True, True),
}


def training_speed(torch, variant, image_size, batch_size, setting, steps, label_smoothing):
    """Images/s of SGD steps on one in-memory batch (no input pipeline: PyTorch's best case)."""
    autocast, channels_last, compile_ = SETTINGS[setting]
    torch.manual_seed(0)
    model = (cifar_net if variant == "cifar" else seed_net)(torch, 10)
    images = torch.rand(batch_size, 3, image_size, image_size) * 255
    labels = torch.randint(0, 10, (batch_size,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    forward = torch.compile(model) if compile_ else model

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(forward(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    for _ in range(5):  # warm-up (and compilation), as many steps as bench.WARMUP_STEPS
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python alexnet_tf/bench_torch.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="cifar", choices=("cifar", "seed"))
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("error: PyTorch is not installed in this environment", file=sys.stderr)
        return 2
    torch.set_num_threads(os.cpu_count())
    image_size = args.image_size or (32 if args.variant == "cifar" else 96)
    results = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for setting, (_, _, compile_) in SETTINGS.items():
        if compile_ and args.no_compile:
            continue
        try:
            results[setting] = training_speed(torch, args.variant, image_size, args.batch_size,
                                              setting, args.steps, args.label_smoothing)
        except Exception as error:  # torch.compile needs a working C++ toolchain
            if not compile_:
                raise
            results[f"{setting}_error"] = f"{type(error).__name__}: {str(error)[:200]}"
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
