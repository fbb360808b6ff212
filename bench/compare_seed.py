"""The classic PyTorch CIFAR-10 AlexNet and the Keras `seed` recipe, side by side.

    python bench/compare_seed.py [--epochs 3] [--train-images 10000] [--val-images 2000]
                                 [--seeds 0 1 2] [--precisions float32 mixed_bfloat16]
                                 [--torch-python PYTHON] [--reference seed_pytorch.py]

Picks a seeded sample of a class-folder dataset (default ../shared/data/cifar10/train), links
it into train/ and val/ folders in a temporary directory, and trains on them, one after the
other, for the same number of epochs: the reference PyTorch script (`--bf16` for the second
precision) and `python -m alexnet_tf.train --variant seed` (`--precision float32`, then
`mixed_bfloat16`). Prints per epoch each one's validation top-1 and wall-clock seconds
(validation included on both sides), then a summary. With several `--seeds`, each side trains
once per seed (Keras `--seed N`; the reference runs unchanged but for its `torch.manual_seed(0)`,
which becomes N) and the summary gives each epoch's mean and spread over the seeds: one seed's
early epochs swing by several points. PyTorch is this benchmark's dependency only:
`--torch-python` is a Python that has torch, numpy and pillow (not requirements.txt).

Both sides see the same pixels: PyTorch's loader decodes with Pillow, alexnet_tf with libjpeg's
accurate IDCT; the script checks every image decodes the same both ways, and otherwise writes
Pillow's pixels as PNG files for both to read.
"""

import argparse
import csv
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10" / "train"
DEFAULT_REFERENCE = ROOT / "bench" / "seed_pytorch.py"
# A virtualenv beside the repo with torch in it (python -m venv --system-site-packages .venv-bench).
BENCH_VENV = ROOT / ".venv-bench" / "bin" / "python"
EPOCH_LINE = re.compile(r"epoch (\d+) train_acc ([\d.]+) test_acc ([\d.]+) elapsed (\d+)s")


def main(argv=None):
    args = parse_args(argv)
    if args.torch_python is None or not pathlib.Path(args.torch_python).exists():
        sys.exit("error: no Python with torch: pass --torch-python PYTHON")
    if not args.reference.is_file():
        sys.exit(f"error: reference script not found: {args.reference}")
    with tempfile.TemporaryDirectory(prefix="compare_seed_") as tmp:
        tmp = pathlib.Path(tmp)
        folders = make_folders(args.data, tmp / "data", args.train_images, args.val_images,
                               args.split_seed)
        results = {}
        for precision in args.precisions:
            for seed in args.seeds:
                results[("pytorch", precision, seed)] = run_pytorch(args, folders, precision, seed)
                results[("keras", precision, seed)] = run_keras(args, folders, precision, seed,
                                                                tmp)
        for seed in args.seeds:
            report(results, args, seed)
        if len(args.seeds) > 1:
            report_seeds(results, args)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA,
                        help="a folder of class subfolders to sample from")
    parser.add_argument("--train-images", type=int, default=10_000)
    parser.add_argument("--val-images", type=int, default=2_000)
    parser.add_argument("--split-seed", type=int, default=0, help="seeds the sample")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds; each side trains once per seed")
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"],
                        choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--torch-python", default=str(BENCH_VENV) if BENCH_VENV.exists() else None,
                        help=f"a Python with torch (default: {BENCH_VENV} if it exists)")
    parser.add_argument("--reference", type=pathlib.Path, default=DEFAULT_REFERENCE,
                        help="the PyTorch tutorial script (default: bench/seed_pytorch.py)")
    return parser.parse_args(argv)


def make_folders(source, root, n_train, n_val, seed):
    """train/ and val/ class folders of links to a seeded sample of `source`'s images, or of
    PNG copies when TensorFlow and Pillow decode some of them differently."""
    files = sorted(p for p in source.glob("*/*") if p.is_file())
    if len(files) < n_train + n_val:
        sys.exit(f"error: {source} has {len(files)} images, fewer than {n_train + n_val}")
    order = np.random.default_rng(seed).permutation(len(files))
    picked = {"train": [files[i] for i in order[:n_train]],
              "val": [files[i] for i in order[n_train:n_train + n_val]]}
    differing = decoded_differently([f for split in picked.values() for f in split])
    print(f"{n_train} train / {n_val} val images from {source} (split seed {seed}); "
          f"{len(differing)} decode differently in TensorFlow and Pillow"
          + (": both sides read Pillow's pixels from PNG copies" if differing else ""),
          flush=True)
    from PIL import Image

    for split, chosen in picked.items():
        for path in chosen:
            target = root / split / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if differing:
                Image.open(path).convert("RGB").save(target.with_suffix(".png"))
            else:
                target.symlink_to(path)
    return {split: root / split for split in picked}


def decoded_differently(paths):
    import tensorflow as tf
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from alexnet_tf.augment import decode_image

    return [p for p in paths
            if not np.array_equal(np.asarray(Image.open(p).convert("RGB")),
                                  decode_image(tf.io.read_file(str(p))).numpy())]


# Runs the reference script as it is, but for the seed its torch.manual_seed(0) sets.
SEEDED_REFERENCE = ("import runpy, sys, torch; seed = int(sys.argv[1]); sys.argv = sys.argv[2:]; "
                    "manual_seed = torch.manual_seed; torch.manual_seed = lambda _: manual_seed(seed); "
                    "runpy.run_path(sys.argv[0], run_name='__main__')")


def run_pytorch(args, folders, precision, seed):
    script = [str(args.reference)] if seed == 0 else ["-c", SEEDED_REFERENCE, str(seed),
                                                      str(args.reference)]
    command = [args.torch_python, *script, str(folders["train"]),
               str(folders["val"]), "--epochs", str(args.epochs), "--budget", "1e9"]
    if precision == "mixed_bfloat16":
        command.append("--bf16")
    print(f"\n$ {' '.join(command)}", flush=True)
    epochs, previous = [], 0
    for line in stream(command):
        if match := EPOCH_LINE.search(line):
            elapsed = int(match[4])
            epochs.append({"top1": float(match[3]), "seconds": elapsed - previous})
            previous = elapsed
    return epochs


def run_keras(args, folders, precision, seed, tmp):
    workdir = tmp / f"run_{precision}_seed{seed}"
    command = [sys.executable, "-m", "alexnet_tf.train", "--variant", "seed",
               "--data", str(folders["train"].parent), "--epochs", str(args.epochs),
               "--precision", precision, "--seed", str(seed), "--workdir", str(workdir),
               "--export-dir", str(tmp / "exports"), "--verbose", "2"]
    print(f"\n$ {' '.join(command)}", flush=True)
    for _ in stream(command, cwd=ROOT):
        pass
    with open(workdir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    minutes = [0.0] + [float(r["minutes"]) for r in rows]
    return [{"top1": 100 * float(r["val_accuracy"]), "seconds": 60 * (minutes[i + 1] - minutes[i])}
            for i, r in enumerate(rows)]


def stream(command, cwd=None):
    """Runs `command`, echoing and yielding its output lines; exits if it fails."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            print("  " + line, end="", flush=True)
            yield line
    if process.returncode:
        sys.exit(f"error: {command[1]} failed (exit code {process.returncode})")


def report(results, args, seed):
    names = [(side, p, seed) for p in args.precisions for side in ("pytorch", "keras")]
    header = "".join(f"{side} {p}".rjust(30) for side, p, _ in names)
    print(f"\nSeed {seed}: validation top-1 (%) and seconds per epoch (validation included)\n"
          f"{'epoch':>5}" + header)
    for epoch in range(args.epochs):
        cells = []
        for name in names:
            rows = results[name]
            cells.append(f"{rows[epoch]['top1']:6.2f}% {rows[epoch]['seconds']:7.1f} s"
                         if epoch < len(rows) else "-")
        print(f"{epoch + 1:>5}" + "".join(c.rjust(30) for c in cells))
    print(f"\nSummary, seed {seed}")
    for p in args.precisions:
        torch_rows, keras_rows = results[("pytorch", p, seed)], results[("keras", p, seed)]
        gap = keras_rows[-1]["top1"] - torch_rows[-1]["top1"]
        torch_s = np.mean([r["seconds"] for r in torch_rows])
        keras_s = np.mean([r["seconds"] for r in keras_rows])
        print(f"  {p}: after {len(keras_rows)} epochs Keras {keras_rows[-1]['top1']:.2f}% vs "
              f"PyTorch {torch_rows[-1]['top1']:.2f}% ({gap:+.2f} points); seconds per epoch "
              f"Keras {keras_s:.1f} vs PyTorch {torch_s:.1f} (Keras/PyTorch {keras_s / torch_s:.2f}x)")


def report_seeds(results, args):
    """Each epoch's validation top-1 as mean and sample standard deviation over the seeds."""
    print(f"\nOver seeds {', '.join(map(str, args.seeds))}: validation top-1 (%), mean ± sd")
    for p in args.precisions:
        print(f"{p:>15}{'pytorch':>18}{'keras':>18}{'keras - pytorch':>18}")
        for epoch in range(args.epochs):
            side = {name: [results[(name, p, s)][epoch]["top1"] for s in args.seeds
                           if epoch < len(results[(name, p, s)])] for name in ("pytorch", "keras")}
            if not all(len(v) == len(args.seeds) for v in side.values()):
                continue
            cells = [f"{np.mean(v):6.2f} ± {np.std(v, ddof=1):4.2f}" for v in side.values()]
            gap = np.mean(side["keras"]) - np.mean(side["pytorch"])
            print(f"{epoch + 1:>15}" + "".join(c.rjust(18) for c in cells) + f"{gap:+18.2f}")


if __name__ == "__main__":
    started = time.time()
    main()
    print(f"\nTotal {time.time() - started:.0f} s")
